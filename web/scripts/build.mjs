// Builds the Map Command page into web/dist (index.html, app.js, leaflet.css,
// app.css, Leaflet's images). With --tests, also bundles the unit tests into
// web/build/test for `node --test`. esbuild only, no plugins.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
const hash = (file) => createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 12);

if (process.argv.includes('--tests')) {
  const dir = path.join(root, 'test', 'unit');
  const out = path.join(root, 'build', 'test');
  rmSync(out, { recursive: true, force: true });
  await build({
    entryPoints: readdirSync(dir).filter((f) => f.endsWith('.test.ts')).map((f) => path.join(dir, f)),
    outdir: out,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: 'inline',
    logLevel: 'warning',
  });
} else {
  rmSync(dist, { recursive: true, force: true });
  mkdirSync(dist, { recursive: true });
  await build({
    entryPoints: [path.join(root, 'src', 'app', 'main.ts')],
    outfile: path.join(dist, 'app.js'),
    bundle: true,
    format: 'iife',
    target: ['es2020'],
    minify: true,
    sourcemap: true,
    legalComments: 'linked',
    logLevel: 'warning',
  });
  const leaflet = path.join(root, 'node_modules', 'leaflet', 'dist');
  cpSync(path.join(leaflet, 'leaflet.css'), path.join(dist, 'leaflet.css'));
  cpSync(path.join(leaflet, 'images'), path.join(dist, 'images'), { recursive: true });
  cpSync(path.join(root, 'src', 'app', 'app.css'), path.join(dist, 'app.css'));
  // index.html names each file with its content hash, so a cached old bundle is never used.
  const html = readFileSync(path.join(root, 'src', 'app', 'index.html'), 'utf8')
    .replace('__APP_JS_HASH__', hash(path.join(dist, 'app.js')))
    .replace('__APP_CSS_HASH__', hash(path.join(dist, 'app.css')))
    .replace('__LEAFLET_CSS_HASH__', hash(path.join(dist, 'leaflet.css')));
  writeFileSync(path.join(dist, 'index.html'), html);
  console.log(`built ${path.relative(process.cwd(), dist) || dist}`);
}
