// The Node.js client against a real authority process, started here on a fresh
// SQLite file and ephemeral ports (read from its log), and stopped at the end.
//
// SESSION_AUTHORITY_TEST_PYTHON names the Python that has the authority installed
// (default: the repository's .venv); ../preflight.js checks it first.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';

import { createLocalJWKSet, createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';

import { AuthorityClient, AuthorityError } from '../authority.js';
import { PYTHON, preflight } from '../preflight.js';

preflight(); // one line and exit 1 when there is no authority to start

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;

/** Start `python -m session_authority_server serve`; resolves once both ports are logged. */
async function startAuthority() {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'session-authority-node-'));
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('SESSION_AUTHORITY_')),
  );
  Object.assign(env, {
    SESSION_AUTHORITY_DATABASE_URL: `sqlite:///${path.join(dir, 's.db')}`,
    SESSION_AUTHORITY_LISTEN: '127.0.0.1:0',
    SESSION_AUTHORITY_HTTP_LISTEN: '127.0.0.1:0',
  });
  const child = spawn(PYTHON, ['-m', 'session_authority_server', 'serve'], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const log = [];
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
  });
  const ports = new Promise((resolve, reject) => {
    let grpcPort = null;
    let httpPort = null;
    const timer = setTimeout(
      () => reject(new Error(`the authority did not start in time:\n${log.join('\n')}`)),
      START_TIMEOUT_MS,
    );
    exited.then(({ code, error }) => {
      clearTimeout(timer);
      reject(
        error
          ? new Error(`cannot start ${PYTHON}: ${error.message}`)
          : new Error(`the authority exited (${code}) before serving:\n${log.join('\n')}`),
      );
    });
    // Read every line for as long as the process lives, so the pipe never fills.
    createInterface({ input: child.stderr }).on('line', (line) => {
      log.push(line);
      const port = (pattern) => line.match(pattern)?.[1] ?? null;
      grpcPort ??= port(/serving gRPC on [\d.]+:(\d+)/);
      httpPort ??= port(/serving HTTP \(JWKS, health, metrics\) on [\d.]+:(\d+)/);
      if (grpcPort && httpPort) {
        clearTimeout(timer);
        resolve({ grpcPort: Number(grpcPort), httpPort: Number(httpPort) });
      }
    });
  });

  // SIGTERM (SIGKILL if it lingers), then remove the database; resolves to how it exited.
  const stop = async () => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
    return exited;
  };
  try {
    return { ...(await ports), log, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Expect a call to fail with this gRPC status name and ErrorInfo reason. */
async function refused(promise, codeName, reason) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof AuthorityError, `not an AuthorityError: ${error}`);
    assert.equal(error.codeName, codeName);
    assert.equal(error.domain, 'session-authority');
    assert.equal(error.reason, reason);
    return true;
  });
}

describe('session authority from Node.js', () => {
  let authority;
  let client;
  let issuer;

  before(async () => {
    authority = await startAuthority();
    client = new AuthorityClient(`127.0.0.1:${authority.grpcPort}`);
    ({ issuer } = await client.getOpenIdDiscoveryConfiguration({}));
  });

  after(async () => {
    client?.close();
    if (authority) {
      const { code } = await authority.stop();
      assert.equal(code, 0, `the authority did not stop cleanly:\n${authority.log.join('\n')}`);
    }
  });

  it('creates a session; jose verifies its token with the HTTP JWKS and GetJwks keys', async () => {
    const created = await client.createNewSession({
      userId: 'user-42',
      accessTokenPayloadJson: JSON.stringify({ role: 'admin' }),
      sessionDataInDatabaseJson: JSON.stringify({ cart: 3 }),
    });
    const handle = created.session.sessionHandle;
    const token = created.accessToken.token;
    assert.equal(created.session.userId, 'user-42');
    assert.match(handle, /^[0-9a-f-]{36}$/);
    // int64 milliseconds arrive as exact decimal strings.
    assert.match(created.accessToken.expiryMs, /^\d+$/);
    assert.ok(BigInt(created.accessToken.expiryMs) > BigInt(Date.now()));
    assert.ok(BigInt(created.refreshToken.expiryMs) > BigInt(created.accessToken.expiryMs));

    const header = decodeProtectedHeader(token);
    assert.equal(header.version, '5');
    assert.equal(header.alg, 'RS256');

    const remote = createRemoteJWKSet(
      new URL(`http://127.0.0.1:${authority.httpPort}/.well-known/jwks.json`),
    );
    const verified = await jwtVerify(token, remote, { issuer, algorithms: ['RS256'] });
    assert.equal(verified.protectedHeader.version, '5');
    assert.equal(verified.protectedHeader.kid, header.kid);
    assert.equal(verified.payload.sub, 'user-42');
    assert.equal(verified.payload.sessionHandle, handle);
    assert.equal(verified.payload.role, 'admin');
    assert.equal(verified.payload.tId, 'public');
    assert.equal(String(verified.payload.exp * 1000), created.accessToken.expiryMs);

    const jwks = await client.jwks();
    assert.ok(jwks.keys.some((key) => key.kid === header.kid));
    assert.ok(jwks.maxAgeSeconds > 0);
    const local = await jwtVerify(token, createLocalJWKSet(jwks), { issuer });
    assert.deepEqual(local.payload, verified.payload);
    // The HTTP JWKS and the RPC's are the same set.
    const response = await fetch(`http://127.0.0.1:${authority.httpPort}/.well-known/jwks.json`);
    const http = await response.json();
    assert.deepEqual(
      http.keys.map((key) => key.kid).sort(),
      jwks.keys.map((key) => key.kid).sort(),
    );

    // One changed character in the signature and jose refuses it.
    const [head, body, signature] = token.split('.');
    const forged = `${head}.${body}.${signature.startsWith('A') ? 'B' : 'A'}${signature.slice(1)}`;
    await assert.rejects(jwtVerify(forged, createLocalJWKSet(jwks)), {
      code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
    });

    // The authority agrees, and has the session's data.
    const session = await client.getSession({ accessToken: token, checkDatabase: true });
    assert.equal(session.session.userId, 'user-42');
    const info = await client.getSessionInformation({ sessionHandle: handle });
    assert.deepEqual(JSON.parse(info.sessionInformation.sessionDataInDatabaseJson), { cart: 3 });
  });

  it('refreshes; the old refresh token within the grace period gives the same successor', async () => {
    const created = await client.createNewSession({ userId: 'user-7' });
    const first = await client.refreshSession({ refreshToken: created.refreshToken.token });
    assert.equal(first.session.sessionHandle, created.session.sessionHandle);
    assert.notEqual(first.refreshToken.token, created.refreshToken.token);
    assert.notEqual(first.accessToken.token, created.accessToken.token);
    const keys = createLocalJWKSet(await client.jwks());
    const { payload } = await jwtVerify(first.accessToken.token, keys, { issuer });
    assert.equal(payload.sub, 'user-7');
    assert.equal(payload.sessionHandle, created.session.sessionHandle);

    // A retry with the old token (a lost response): the same successor, no theft.
    const again = await client.refreshSession({ refreshToken: created.refreshToken.token });
    assert.equal(again.refreshToken.token, first.refreshToken.token);

    // The successor rotates on as usual, and the session is still there.
    const next = await client.refreshSession({ refreshToken: first.refreshToken.token });
    assert.notEqual(next.refreshToken.token, first.refreshToken.token);
    const handle = created.session.sessionHandle;
    const info = await client.getSessionInformation({ sessionHandle: handle });
    assert.equal(info.sessionInformation.userId, 'user-7');
  });

  it('detects theft: T0 reused after T1 and T2 revokes the session', async () => {
    const t0 = await client.createNewSession({ userId: 'user-9' });
    const handle = t0.session.sessionHandle;
    const t1 = await client.refreshSession({ refreshToken: t0.refreshToken.token });
    const t2 = await client.refreshSession({ refreshToken: t1.refreshToken.token });

    let theft;
    const reuse = client.refreshSession({ refreshToken: t0.refreshToken.token });
    await assert.rejects(reuse, (error) => {
      theft = error;
      return error instanceof AuthorityError;
    });
    assert.equal(theft.codeName, 'PERMISSION_DENIED');
    assert.equal(theft.reason, 'TOKEN_THEFT_DETECTED');
    assert.deepEqual(theft.metadata, { sessionHandle: handle, userId: 'user-9' });

    // The session is gone: no information, no refresh, no verification against the database.
    const info = await client.getSessionInformation({ sessionHandle: handle });
    assert.equal(info.sessionInformation, null);
    const handles = await client.getAllSessionHandlesForUser({ userId: 'user-9' });
    assert.deepEqual(handles.sessionHandles, []);
    await refused(
      client.refreshSession({ refreshToken: t2.refreshToken.token }),
      'UNAUTHENTICATED',
      'UNAUTHORISED',
    );
    await refused(
      client.getSession({ accessToken: t2.accessToken.token, checkDatabase: true }),
      'UNAUTHENTICATED',
      'UNAUTHORISED',
    );
  });

  it('reports errors with their ErrorInfo (UNAUTHORISED, INVALID_ARGUMENT)', async () => {
    await refused(
      client.getSession({ accessToken: 'not-a-jwt' }),
      'UNAUTHENTICATED',
      'UNAUTHORISED',
    );
    await assert.rejects(client.createNewSession({ userId: '' }), (error) => {
      assert.equal(error.codeName, 'INVALID_ARGUMENT');
      assert.equal(error.reason, 'INVALID_ARGUMENT');
      assert.equal(error.metadata.field, 'user_id');
      return true;
    });
  });
});
