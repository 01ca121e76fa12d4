// Builds the Map Command page into web/dist (index.html, app.js, leaflet.css,
// app.css, Leaflet's images). With --tests, also bundles the unit tests into
// web/build/test for `node --test`. esbuild only, no plugins.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
/** The compat entry, socket.io-client included, minified and gzipped (issue 15). */
const COMPAT_BUDGET_GZIP = 30 * 1024;
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
  await buildCompat();
}

/**
 * The drop-in for the WeCare app's socketService.ts (compat/): an ES module
 * that leaves socket.io-client to the app (its own copy, deduplicated by npm),
 * its type declarations, the size of the whole entry with socket.io-client
 * in it (the budget), and the `npm pack` tarball the app installs.
 */
async function buildCompat() {
  const compat = path.join(root, 'compat');
  const out = path.join(compat, 'dist');
  rmSync(out, { recursive: true, force: true });
  const entry = path.join(root, 'src', 'compat', 'socketService.ts');
  await build({
    entryPoints: [entry],
    outfile: path.join(out, 'socketService.js'),
    bundle: true,
    format: 'esm',
    target: ['es2020'],
    external: ['socket.io-client'],
    sourcemap: true,
    logLevel: 'warning',
  });
  execFileSync(path.join(root, 'node_modules', '.bin', 'tsc'), ['-p', path.join(compat, 'tsconfig.json')], { stdio: 'inherit' });
  cpSync(path.join(out, 'types', 'compat', 'socketService.d.ts'), path.join(out, 'socketService.d.ts'));
  rmSync(path.join(out, 'types'), { recursive: true, force: true });
  // The budget: what the app's page loads for this module, socket.io-client included.
  const whole = await build({ entryPoints: [entry], bundle: true, format: 'esm', target: ['es2020'], minify: true, write: false, logLevel: 'warning' });
  const bytes = whole.outputFiles[0].contents;
  const gzipped = gzipSync(bytes, { level: 9 }).length;
  writeFileSync(path.join(out, 'size.json'), `${JSON.stringify({ minified: bytes.length, gzipped, budget: COMPAT_BUDGET_GZIP }, null, 2)}\n`);
  console.log(`compat entry with socket.io-client: ${(bytes.length / 1024).toFixed(1)} KiB minified, ${(gzipped / 1024).toFixed(1)} KiB gzipped (budget ${COMPAT_BUDGET_GZIP / 1024} KiB)`);
  if (gzipped > COMPAT_BUDGET_GZIP) throw new Error(`compat entry is ${gzipped} bytes gzipped, over the ${COMPAT_BUDGET_GZIP}-byte budget`);
  for (const f of readdirSync(compat)) if (f.endsWith('.tgz')) rmSync(path.join(compat, f));
  execFileSync('npm', ['pack', '--silent', '--pack-destination', compat], { cwd: compat, stdio: ['ignore', 'inherit', 'inherit'] });
}
