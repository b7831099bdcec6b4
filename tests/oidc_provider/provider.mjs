// The OpenID Connect provider tests/test_oidc.py signs in against: node-oidc-provider (OpenID
// Certified), on loopback only, issuer http://127.0.0.1:<port>, with one confidential client that
// must use PKCE and the accounts of a JSON file the test writes (read at each sign-in, so that a
// test can change a user's groups between two). Its own login and consent pages (devInteractions'
// would load a web font from the internet) carry nothing from elsewhere.
//
// Environment: CLIENT_ID, CLIENT_SECRET, REDIRECT_URI (the portal's /oidc/callback/), ACCOUNTS_FILE
// ({"alice": {"password": "...", "groups": ["..."], "email": "...", ...}}), PORT (0: any free one).
// Prints "ready <issuer>" once it listens; logs each authorization request and error on stdout.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const { CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, ACCOUNTS_FILE } = process.env;

function accounts() {
  return JSON.parse(readFileSync(ACCOUNTS_FILE, 'utf8'));
}

// An account's claims: the username is preferred_username, not sub (an opaque id, as providers give).
async function findAccount(ctx, id) {
  const account = accounts()[id];
  if (!account) return undefined;
  return {
    accountId: id,
    async claims() {
      const { password, sub, ...claims } = account;
      return { sub: sub ?? `sub-${id}`, preferred_username: id, ...claims };
    },
  };
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(res, title, body) {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${escape(title)} · Test provider</title></head>
<body><main><h1>${escape(title)}</h1>${body}</main></body></html>`);
}

async function form(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

function loginPage(res, uid, error = '') {
  page(res, 'Sign in to the test provider', `${error ? `<p role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${uid}/login">
  <label for="username">Username</label> <input id="username" name="username" autocomplete="off" required>
  <label for="password">Password</label> <input id="password" name="password" type="password" required>
  <button type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${uid}/abort"><button type="submit">Cancel</button></form>`);
}

// /interaction/<uid>: the login page, then the consent page; their answers finish the interaction.
async function interaction(provider, req, res, uid, action) {
  const { prompt, params, session, grantId } = await provider.interactionDetails(req, res);
  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') return loginPage(res, uid);
    const scopes = [...(prompt.details.missingOIDCScope ?? [])].join(', ');
    return page(res, 'Allow access', `<p>${escape(params.client_id)} asks to read your ${escape(scopes)}.</p>
<form method="post" action="/interaction/${uid}/consent"><button type="submit">Allow</button></form>
<form method="post" action="/interaction/${uid}/abort"><button type="submit">Deny</button></form>`);
  }
  if (req.method === 'POST' && action === 'login') {
    const answer = await form(req);
    const account = accounts()[answer.get('username')];
    if (!account || account.password !== answer.get('password')) {
      return loginPage(res, uid, 'Wrong username or password.');
    }
    return provider.interactionFinished(req, res, { login: { accountId: answer.get('username') } }, {
      mergeWithLastSubmission: false,
    });
  }
  if (req.method === 'POST' && action === 'consent') {
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    return provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, {
      mergeWithLastSubmission: true,
    });
  }
  if (req.method === 'POST' && action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
  }
  res.writeHead(405).end();
}

const server = createServer();
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
    }],
    // Every client must use PKCE (oidc-provider takes S256 only): an authorization request without
    // a code_challenge is refused, as is a code redeemed without its verifier.
    pkce: { required: () => true },
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['preferred_username', 'name', 'given_name', 'family_name'],
      groups: ['groups'],
    },
    findAccount,
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'test-key', alg: 'RS256', use: 'sig' }] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
  });
  provider.on('authorization.accepted', (ctx) => console.log(`authorization request ${ctx.href}`));
  for (const event of ['authorization.error', 'grant.error', 'userinfo.error', 'server_error']) {
    provider.on(event, (ctx, error) => console.log(`${event}: ${error.message} ${error.error_description ?? ''}`));
  }
  const handle = provider.callback();
  server.on('request', (req, res) => {
    const found = /^\/interaction\/([\w-]+)(?:\/(login|consent|abort))?$/.exec(req.url);
    if (!found) return handle(req, res);
    interaction(provider, req, res, found[1], found[2]).catch((error) => {
      console.log(`interaction error: ${error.message}`);
      if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`Interaction failed: ${error.message}`);
    });
  });
  console.log(`ready ${issuer}`);
});
