// server.mjs runs panva's oidc-provider (npm `oidc-provider` 9.x, OpenID
// Certified) on a loopback port for latchkey's e2e suite. The Go harness
// (internal/harness/oidcprovider.go) starts it; by hand:
//
//   npm ci && node server.mjs --port 9443 --cert serving.crt --key serving.key
//
// The configuration stays close to the library's defaults, which are strict:
// PKCE required for public clients, RFC 9207 `iss` in every authorization
// response, offline_access (a refresh token) only with prompt=consent, ID
// token claims for scopes only in userinfo unless asked for with the claims
// parameter (conformIdTokenClaims), refresh tokens rotated on every use (a
// replayed one revokes the grant). On top: devInteractions (the library's
// plain login and consent pages: any login and password), the device flow,
// revocation, client credentials, resource indicators (urn:example:api issues
// JWT access tokens) and the claims parameter.
//
// The issuer is https://127.0.0.1:<port>/oidc (http without --cert). Outside
// the issuer, GET /e2e/requests returns every request the provider answered
// (route, grant type, client, status, OAuth error, SHA-256 of the tokens sent
// and returned; never a token), so tests can count token requests.
//
// It prints one line "oidc-provider ready <issuer>" on stdout when it listens,
// and exits on SIGTERM/SIGINT, or when its parent process goes away.
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: opt } = parseArgs({
  options: {
    host: { type: 'string', default: process.env.OP_HOST || '127.0.0.1' },
    port: { type: 'string', default: process.env.OP_PORT || '0' },
    cert: { type: 'string', default: process.env.OP_CERT || '' },
    key: { type: 'string', default: process.env.OP_KEY || '' },
    // Seconds. ID and access tokens (E2E_ID_TOKEN_TTL of the Go tests).
    'token-ttl': { type: 'string', default: process.env.OP_TOKEN_TTL || '20' },
    // Seconds a device code (RFC 8628) stays valid.
    'device-code-ttl': { type: 'string', default: process.env.OP_DEVICE_CODE_TTL || '600' },
    'client-secret': { type: 'string', default: process.env.OP_CLIENT_SECRET || 'e2e-confidential-secret' },
    // Not the default, and not used by the tests: a token request without
    // `resource` gets the resource granted at the authorization request (a
    // JWT access token), as a client that sends `resource` would. For
    // reproducing what latchkey does with a JWT access token by hand.
    'use-granted-resource': { type: 'boolean', default: false },
  },
  strict: true,
});

const mount = '/oidc';
const tls = opt.cert !== '' && opt.key !== '';
const tokenTTL = positiveInt('token-ttl', opt['token-ttl']);
const deviceCodeTTL = positiveInt('device-code-ttl', opt['device-code-ttl']);

function positiveInt(name, v) {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) {
    console.error(`--${name}: want a positive number of seconds, got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
}

// A fresh signing key per start, as after a key rotation (and like Dex's
// memory storage): tokens of an earlier run do not verify.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: `e2e-${randomBytes(6).toString('hex')}`, use: 'sig', alg: 'RS256' };

// The same groups as the Go tests' user (e2eUser in env_test.go).
const groups = ['e2e-team', 'e2e-other'];

// Any login is a user: the login itself is the subject; an e-mail address if
// it looks like one, else <login>@example.com.
async function findAccount(_ctx, sub) {
  const email = sub.includes('@') ? sub : `${sub}@example.com`;
  return {
    accountId: sub,
    async claims() {
      return {
        sub, email, email_verified: true, name: `E2E ${sub}`, groups,
      };
    },
  };
}

const configuration = {
  clients: [
    {
      // RFC 8252: a native public client; loopback redirects match on any port.
      client_id: 'latchkey',
      client_name: 'latchkey e2e (native, public)',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      redirect_uris: ['http://127.0.0.1/callback', 'http://localhost/callback'],
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
    },
    {
      // Confidential: the secret in HTTP Basic; also client credentials.
      // Native too, so its loopback redirect takes any port.
      client_id: 'latchkey-secret',
      client_name: 'latchkey e2e (native, confidential)',
      client_secret: opt['client-secret'],
      application_type: 'native',
      token_endpoint_auth_method: 'client_secret_basic',
      redirect_uris: ['http://127.0.0.1/callback', 'http://localhost/callback'],
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
    },
  ],
  findAccount,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    clientCredentials: { enabled: true },
    claimsParameter: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // The default (none) unless the client asks for one.
      defaultResource: (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: () => opt['use-granted-resource'],
      getResourceServerInfo: (_ctx, resource) => {
        if (resource !== 'urn:example:api') {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope: 'api:read',
          audience: 'urn:example:api',
          accessTokenFormat: 'jwt',
          accessTokenTTL: tokenTTL,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  // Explicitly the defaults the tests depend on.
  pkce: { required: () => true },
  rotateRefreshToken: true,
  ttl: {
    IdToken: tokenTTL,
    AccessToken: tokenTTL,
    ClientCredentials: tokenTTL,
    AuthorizationCode: 60,
    DeviceCode: deviceCodeTTL,
    RefreshToken: 24 * 60 * 60,
    Interaction: 60 * 60,
    Session: 24 * 60 * 60,
    Grant: 24 * 60 * 60,
  },
};

let server;
const scheme = tls ? 'https' : 'http';
// The issuer needs the port, which is known only once listening with port 0;
// the harness passes a port, so 0 is for trying it by hand.
const listening = new Promise((resolve, reject) => {
  const handler = (req, res) => app(req, res);
  server = tls
    ? https.createServer({ cert: readFileSync(opt.cert), key: readFileSync(opt.key) }, handler)
    : http.createServer(handler);
  server.once('error', reject);
  server.listen(Number(opt.port), opt.host, () => resolve(server.address().port));
});
const port = await listening;
const host = opt.host.includes(':') ? `[${opt.host}]` : opt.host;
const issuer = `${scheme}://${host}:${port}${mount}`;
const provider = new Provider(issuer, configuration);

// The request log: one record per request the provider answered.
const requests = [];
const sha256 = (s) => (typeof s === 'string' && s !== '' ? createHash('sha256').update(s).digest('hex') : '');
provider.use(async (ctx, next) => {
  await next();
  const o = ctx.oidc;
  if (!o?.route) {
    return;
  }
  const p = o.params || {};
  // What the client sent: the provider rewrites some parameters (it drops
  // offline_access from scope without prompt=consent, for one).
  const raw = (ctx.method === 'POST' ? o.body : ctx.query) || {};
  const body = ctx.body && typeof ctx.body === 'object' && !Buffer.isBuffer(ctx.body) && typeof ctx.body.pipe !== 'function' ? ctx.body : {};
  const rec = {
    route: o.route,
    method: ctx.method,
    status: ctx.status,
    client_id: o.client?.clientId || p.client_id || '',
    grant_type: p.grant_type || '',
    error: body.error ? `${body.error}${body.error_description ? `: ${body.error_description}` : ''}` : '',
    // How the client authenticated: basic, post (client_secret in the form) or none.
    client_auth: (ctx.get('authorization').split(' ')[0] || '').toLowerCase() || (raw.client_secret ? 'post' : 'none'),
    // latchkey's own check of an authorization request says so here; the
    // browser's does not.
    user_agent: ctx.get('user-agent') || '',
  };
  switch (o.route) {
    case 'token':
      Object.assign(rec, {
        scope: raw.scope || '',
        resource: raw.resource || '',
        presented_refresh_token_hash: sha256(p.refresh_token),
        id_token_hash: sha256(body.id_token),
        access_token_hash: sha256(body.access_token),
        refresh_token_hash: sha256(body.refresh_token),
        response_scope: body.scope || '',
        token_type: body.token_type || '',
      });
      break;
    case 'authorization':
    case 'device_authorization':
      Object.assign(rec, {
        scope: raw.scope || '',
        prompt: raw.prompt || '',
        resource: raw.resource || '',
        claims: raw.claims || '',
        redirect_uri: raw.redirect_uri || '',
        code_challenge_method: raw.code_challenge_method || '',
      });
      break;
    case 'revocation':
      Object.assign(rec, { token_type_hint: raw.token_type_hint || '', presented_token_hash: sha256(raw.token) });
      break;
    default:
  }
  requests.push(rec);
});

let callback; // set once the provider exists

function app(req, res) {
  if (!callback) {
    res.writeHead(503, { 'content-type': 'text/plain' });
    res.end('starting\n');
    return;
  }
  if (req.method === 'GET' && req.url === '/e2e/requests') {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(requests));
    return;
  }
  // Mounted under /oidc the way express's app.use would: the provider reads
  // its mount path from originalUrl.
  if (req.url === mount || req.url.startsWith(`${mount}/`) || req.url.startsWith(`${mount}?`)) {
    req.originalUrl = req.url;
    req.url = req.url.slice(mount.length) || '/';
    callback(req, res);
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found\n');
}

callback = provider.callback();
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

function stop(why) {
  console.log(`oidc-provider stopping: ${why}`);
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
// The harness also sets a parent-death signal; this covers a start by other
// means (a shell, make): when the parent goes, the process is re-parented.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) {
    stop(`parent ${parent} is gone`);
  }
}, 1000).unref();
// Keep the event loop alive through the interval's unref: the server does.

console.log(`oidc-provider ready ${issuer} (node ${process.version}, token TTL ${tokenTTL}s, device code TTL ${deviceCodeTTL}s)`);
