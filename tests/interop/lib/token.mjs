// JWT minting for the interop suite: HS256 (and deliberately wrong variants)
// with node:crypto only, shaped like the tokens the WeCare backend issues:
// { id, email, role, driver_id?, exp, iat } with exp/iat in epoch SECONDS.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export function b64url(input) {
  const buf = Buffer.isBuffer(input) ? input : Buffer.from(input, 'utf8');
  return buf.toString('base64url');
}

export function nowSeconds() {
  return Math.floor(Date.now() / 1000);
}

export function randomSecret() {
  return randomBytes(32).toString('hex');
}

/**
 * Sign `payload` exactly as given (no defaults added).
 * alg: 'HS256' (default), 'HS384', 'HS512' (signed with that HMAC), or 'none'
 * (empty signature). `header` overrides/extends the JOSE header.
 */
export function signJwt(payload, secret, { alg = 'HS256', header = {} } = {}) {
  const h = { alg, typ: 'JWT', ...header };
  const signingInput = `${b64url(JSON.stringify(h))}.${b64url(JSON.stringify(payload))}`;
  const hashes = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };
  let sig = '';
  if (alg !== 'none') {
    const hash = hashes[alg];
    if (!hash) throw new Error(`unsupported alg ${alg}`);
    sig = createHmac(hash, secret).update(signingInput).digest('base64url');
  }
  return `${signingInput}.${sig}`;
}

/**
 * Verify an HS256 token as the WeCare backend does (jsonwebtoken's verify
 * with its secret): the signature, `alg` HS256, and `exp`/`nbf` (epoch
 * seconds) when present. Returns the claims, or null when it does not hold.
 */
export function verifyJwt(token, secret, { now = nowSeconds() } = {}) {
  const parts = typeof token === 'string' ? token.split('.') : [];
  if (parts.length !== 3) return null;
  let header;
  let claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  if (header?.alg !== 'HS256' || claims === null || typeof claims !== 'object') return null;
  const expected = createHmac('sha256', secret).update(`${parts[0]}.${parts[1]}`).digest();
  const given = Buffer.from(parts[2], 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  if (typeof claims.exp === 'number' && now >= claims.exp) return null;
  if (typeof claims.nbf === 'number' && now < claims.nbf) return null;
  return claims;
}

/**
 * A backend-style token: defaults iat = now, exp = now + ttlSeconds.
 * Pass `exp: undefined` / `iat: undefined` explicitly in claims to drop them.
 */
export function mintToken(secret, claims, { ttlSeconds = 3600, alg = 'HS256', header } = {}) {
  const iat = nowSeconds();
  const payload = { iat, exp: iat + ttlSeconds, ...claims };
  for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
  return signJwt(payload, secret, { alg, header });
}

let counter = 0;
export function uniqueName(prefix) {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}-${randomBytes(3).toString('hex')}`;
}

/** Driver token: identity = driver_id claim (string unless given otherwise). */
export function driverToken(secret, { driverId = uniqueName('drv'), id, email, role = 'driver', ...rest } = {}) {
  const userId = id ?? Math.floor(Math.random() * 1e6);
  return mintToken(secret, {
    id: userId,
    email: email ?? `${driverId}@drivers.wecare.test`,
    role,
    driver_id: driverId,
    ...rest,
  });
}

export function watcherToken(secret, { role = 'officer', id, email, ...rest } = {}) {
  const userId = id ?? uniqueName('usr');
  return mintToken(secret, { id: userId, email: email ?? `${userId}@wecare.test`, role, ...rest });
}
