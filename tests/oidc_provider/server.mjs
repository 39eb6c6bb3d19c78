// A local OpenID Connect provider for dbward's tests, built on oidc-provider.
//
// Listens on 127.0.0.1 only, plain HTTP. The port comes from argv[2], else
// OIDC_PORT, else 0 (any free port). Once it listens it prints one JSON line on
// stdout: {"port": N, "issuer": "http://127.0.0.1:N"}. Everything else it says
// goes to stderr, and it never logs tokens, codes, cookies or form bodies.
//
// Environment:
//   OIDC_ACCOUNTS               JSON object: account id (an email) -> {name?, groups?, email_verified?}
//   OIDC_CONSOLE_REDIRECT_URIS  comma-separated redirect URIs of the dbward-console client
//   OIDC_CONSOLE_CLIENT_SECRET  if set, dbward-console is confidential (client_secret_basic/post);
//                               otherwise it is a public client (PKCE, no secret)
//   OIDC_ID_TOKEN_TTL           seconds, default 3600
//   OIDC_ACCESS_TOKEN_TTL       seconds, default 3600
//   OIDC_REFRESH_TOKEN_TTL      seconds, default 86400
//   OIDC_DEVICE_CODE_TTL        seconds, default 600
//   OIDC_LOG                    "1": log each request's method, path (no query) and status to stderr

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';
const CLI_CLIENT_ID = 'dbward-cli';
const CONSOLE_CLIENT_ID = 'dbward-console';
const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

// oidc-provider prints its configuration notices with console.info (stdout);
// stdout is reserved for the one "ready" line.
console.info = (...args) => console.error(...args);
console.log = (...args) => console.error(...args);

function fail(message) {
  console.error(`oidc test provider: ${message}`);
  process.exit(2);
}

function seconds(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') {
    return fallback;
  }
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    fail(`${name} must be a positive integer number of seconds`);
  }
  return value;
}

function loadAccounts() {
  const raw = process.env.OIDC_ACCOUNTS;
  if (!raw) {
    return new Map();
  }
  let parsed;
  try {
    parsed = JSON.parse(raw);
  } catch {
    fail('OIDC_ACCOUNTS is not valid JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    fail('OIDC_ACCOUNTS must be a JSON object keyed by account id');
  }
  const accounts = new Map();
  for (const [id, info] of Object.entries(parsed)) {
    const entry = info ?? {};
    if (typeof entry !== 'object' || Array.isArray(entry)) {
      fail(`OIDC_ACCOUNTS: the entry for ${JSON.stringify(id)} must be an object`);
    }
    const groups = entry.groups ?? [];
    if (!Array.isArray(groups) || !groups.every((g) => typeof g === 'string')) {
      fail(`OIDC_ACCOUNTS: groups of ${JSON.stringify(id)} must be a list of strings`);
    }
    accounts.set(id, {
      email: entry.email ?? id,
      email_verified: entry.email_verified ?? true,
      name: entry.name ?? id,
      groups,
    });
  }
  return accounts;
}

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `rs256-${randomBytes(6).toString('hex')}`, alg: 'RS256', use: 'sig' };
}

function clients() {
  const cli = {
    client_id: CLI_CLIENT_ID,
    client_name: 'dbward CLI',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: [DEVICE_CODE_GRANT, 'refresh_token'],
    response_types: [],
    redirect_uris: [],
  };
  const redirectUris = (process.env.OIDC_CONSOLE_REDIRECT_URIS ?? '')
    .split(',')
    .map((uri) => uri.trim())
    .filter(Boolean);
  const secret = process.env.OIDC_CONSOLE_CLIENT_SECRET;
  const console_ = {
    client_id: CONSOLE_CLIENT_ID,
    client_name: 'dbward console',
    application_type: 'web',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: redirectUris.length ? redirectUris : [`http://${HOST}/dbward-console/callback`],
    ...(secret
      ? { client_secret: secret, token_endpoint_auth_method: 'client_secret_basic' }
      : { token_endpoint_auth_method: 'none' }),
  };
  return [cli, console_];
}

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, title, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body><h1>${escapeHtml(title)}</h1>
${body}
</body></html>`);
}

function loginPage(res, uid, clientId, error, status = 200) {
  const message = error ? `<p class="error">${escapeHtml(error)}</p>` : '';
  page(res, status, 'Sign-in', `${message}
<p>Client: <code>${escapeHtml(clientId)}</code></p>
<form id="login" method="post" action="/interaction/${escapeHtml(uid)}/login">
  <input type="email" name="login" placeholder="Email" autofocus>
  <button type="submit">Sign in</button>
</form>
<form id="abort" method="post" action="/interaction/${escapeHtml(uid)}/abort">
  <button type="submit">Cancel</button>
</form>`);
}

function consentPage(res, uid, clientId, accountId, details) {
  const scopes = [...(details.missingOIDCScope ?? [])];
  for (const scope of Object.values(details.missingResourceScopes ?? {})) {
    scopes.push(...scope);
  }
  const items = scopes.map((s) => `<li>${escapeHtml(s)}</li>`).join('');
  page(res, 200, 'Authorize', `
<p><code>${escapeHtml(clientId)}</code> asks to act as <code>${escapeHtml(accountId)}</code> with:</p>
<ul>${items}</ul>
<form id="confirm" method="post" action="/interaction/${escapeHtml(uid)}/confirm">
  <button type="submit">Allow</button>
</form>
<form id="abort" method="post" action="/interaction/${escapeHtml(uid)}/abort">
  <button type="submit">Deny</button>
</form>`);
}

// The device flow's own pages. Each carries <p id="status" data-status="...">
// so a script can tell where it is without reading prose.
const DEVICE_ERRORS = {
  NoCodeError: 'no_code',
  NotFoundError: 'not_found',
  ExpiredError: 'expired',
  AlreadyUsedError: 'already_used',
  AbortedError: 'aborted',
};

function devicePage(ctx, title, status, text, body) {
  ctx.type = 'html';
  ctx.body = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body><h1>${escapeHtml(title)}</h1>
<p id="status" data-status="${escapeHtml(status)}">${escapeHtml(text)}</p>
${body}
</body></html>`;
}

async function userCodeInputSource(ctx, form, out, err) {
  let status = 'enter';
  if (err) {
    status = DEVICE_ERRORS[err.name] ?? (err.userCode ? 'not_found' : 'error');
  }
  const text = {
    enter: 'Enter the code displayed on your device.',
    no_code: 'Enter a code.',
    not_found: 'The code you entered is incorrect.',
    expired: 'The code has expired.',
    already_used: 'The code has already been used.',
    aborted: 'The sign-in request was interrupted.',
    error: `There was an error processing your request${out?.error ? ` (${out.error})` : ''}.`,
  }[status];
  devicePage(ctx, 'Device sign-in', status, text, `${form}
<button type="submit" form="op.deviceInputForm">Continue</button>`);
}

async function userCodeConfirmSource(ctx, form, client, deviceInfo, userCode) {
  const name = client.clientName || client.clientId;
  devicePage(ctx, 'Confirm device', 'confirm', `${name} shows the code ${userCode}.`, `${form}
<button type="submit" form="op.deviceConfirmForm">Continue</button>
<button type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Abort</button>`);
}

async function successSource(ctx) {
  devicePage(ctx, 'Device sign-in', 'success', 'Signed in: you can close this page.', '');
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) {
      throw new Error('form body too large');
    }
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// The login and consent steps, for both the device flow and the authorization
// code flow: GET /interaction/:uid shows the current prompt, POST
// .../login|confirm|abort answers it.
async function interaction(provider, accounts, req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    page(res, 400, 'Error', '<p>interaction mismatch</p>');
    return;
  }
  const { prompt, params, session } = details;
  const clientId = String(params.client_id ?? '');

  if (req.method === 'GET' && action === undefined) {
    if (prompt.name === 'login') {
      loginPage(res, uid, clientId);
    } else if (prompt.name === 'consent') {
      consentPage(res, uid, clientId, session?.accountId ?? '', prompt.details);
    } else {
      page(res, 501, 'Error', `<p>unsupported prompt ${escapeHtml(prompt.name)}</p>`);
    }
    return;
  }
  if (req.method !== 'POST') {
    page(res, 405, 'Error', '<p>method not allowed</p>');
    return;
  }

  if (action === 'abort') {
    await provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'End-User aborted interaction' },
      { mergeWithLastSubmission: false },
    );
    return;
  }

  if (action === 'login') {
    if (prompt.name !== 'login') {
      page(res, 400, 'Error', '<p>not a login prompt</p>');
      return;
    }
    const form = await readForm(req);
    const accountId = (form.get('login') ?? '').trim();
    if (!accounts.has(accountId)) {
      loginPage(res, uid, clientId, 'Unknown account', 403);
      return;
    }
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId } },
      { mergeWithLastSubmission: false },
    );
    return;
  }

  if (action === 'confirm') {
    if (prompt.name !== 'consent') {
      page(res, 400, 'Error', '<p>not a consent prompt</p>');
      return;
    }
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId });
    const missing = prompt.details;
    if (missing.missingOIDCScope) {
      grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    }
    if (missing.missingOIDCClaims) {
      grant.addOIDCClaims(missing.missingOIDCClaims);
    }
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(
      req,
      res,
      { consent: { grantId } },
      { mergeWithLastSubmission: true },
    );
    return;
  }

  page(res, 404, 'Error', '<p>not found</p>');
}

async function main() {
  const requested = process.argv[2] ?? process.env.OIDC_PORT ?? '0';
  const port = Number(requested);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    fail('the port must be an integer between 0 and 65535');
  }

  const accounts = loadAccounts();
  const idTokenTtl = seconds('OIDC_ID_TOKEN_TTL', 3600);
  const accessTokenTtl = seconds('OIDC_ACCESS_TOKEN_TTL', 3600);
  const refreshTokenTtl = seconds('OIDC_REFRESH_TOKEN_TTL', 86400);
  const deviceCodeTtl = seconds('OIDC_DEVICE_CODE_TTL', 600);
  const logRequests = process.env.OIDC_LOG === '1';

  // Listen first: with port 0 the issuer (which carries the port) is known only then.
  const server = createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, HOST, resolve);
  });
  const actualPort = server.address().port;
  const issuer = `http://${HOST}:${actualPort}`;

  const provider = new Provider(issuer, {
    clients: clients(),
    jwks: { keys: [signingKey()] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    async findAccount(ctx, id) {
      const account = accounts.get(id);
      if (!account) {
        return undefined;
      }
      return {
        accountId: id,
        async claims() {
          return { sub: id, ...account, groups: [...account.groups] };
        },
      };
    },
    claims: {
      acr: null,
      auth_time: null,
      iss: null,
      sid: null,
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    // Scope-requested claims go into the ID token too, not only to userinfo.
    conformIdTokenClaims: false,
    responseTypes: ['code', 'none'],
    enabledJWA: { idTokenSigningAlgValues: ['RS256'] },
    clientDefaults: { id_token_signed_response_alg: 'RS256' },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: {
        enabled: true,
        userCodeInputSource,
        userCodeConfirmSource,
        successSource,
      },
      revocation: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
      },
    },
    interactions: {
      url: (ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    clientBasedCORS: () => false,
    ttl: {
      AccessToken: accessTokenTtl,
      AuthorizationCode: 60,
      DeviceCode: deviceCodeTtl,
      IdToken: idTokenTtl,
      RefreshToken: refreshTokenTtl,
      Grant: refreshTokenTtl,
      Interaction: 600,
      Session: 3600,
      BackchannelAuthenticationRequest: 600,
      ClientCredentials: 600,
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Error</h1><p id="error">${escapeHtml(out.error)}</p><p id="error_description">${escapeHtml(out.error_description ?? '')}</p></body></html>`;
    },
  });

  provider.on('server_error', (ctx, err) => {
    console.error(`oidc test provider: server error on ${ctx.method} ${ctx.path}: ${err.name}: ${err.message}`);
  });

  const callback = provider.callback();
  const interactionPath = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm|abort))?$/;

  server.on('request', (req, res) => {
    const { pathname } = new URL(req.url, issuer);
    if (logRequests) {
      res.on('finish', () => console.error(`${req.method} ${pathname} ${res.statusCode}`));
    }
    const match = interactionPath.exec(pathname);
    if (!match) {
      callback(req, res);
      return;
    }
    interaction(provider, accounts, req, res, match[1], match[2]).catch((err) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const expected = err instanceof errors.SessionNotFound || err instanceof errors.OIDCProviderError;
      if (!expected) {
        console.error(`oidc test provider: interaction failed: ${err.name}: ${err.message}`);
      }
      page(res, expected ? 400 : 500, 'Error', `<p id="error">${escapeHtml(err.name)}</p>`);
    });
  });

  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  process.stdout.write(`${JSON.stringify({ port: actualPort, issuer })}\n`);
}

main().catch((err) => fail(`could not start: ${err.stack ?? err}`));
