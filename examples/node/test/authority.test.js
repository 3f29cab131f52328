// The Connect-ES client against a real authority process, started here on a fresh
// SQLite file, ephemeral ports (read from its log) and an API key, and stopped at
// the end. The same tests run over each protocol: gRPC to the gRPC port, Connect
// (JSON and binary) and gRPC-Web to the HTTP port; each protocol's last test
// checks that its tests called every RPC of SessionService.
//
// SESSION_AUTHORITY_TEST_PYTHON names the Python that has the authority installed
// (default: the repository's .venv); ../preflight.js checks it first.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';

import { Code, ConnectError } from '@connectrpc/connect';
import { durationFromMs, durationMs, timestampDate, timestampMs } from '@bufbuild/protobuf/wkt';
import { createLocalJWKSet, createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';

import {
  ERROR_DOMAIN,
  PROTOCOLS,
  SessionService,
  authorityTransport,
  badRequest,
  createAuthorityClient,
  errorInfo,
  fromValue,
  invalidClaims,
  jwks,
  toValue,
  watchRevocations,
} from '../authority.js';
import { ClaimValidatorKind } from '../gen/session_authority/v1/session_service_pb.js';
import { PYTHON, preflight } from '../preflight.js';

preflight(); // one line and exit 1 when there is no authority to start

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
const STREAM_TIMEOUT_MS = 20_000; // the authority heartbeats every 5 s
const API_KEY = randomBytes(24).toString('hex');

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
    SESSION_AUTHORITY_API_KEYS: API_KEY,
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

/** Expect a call to fail with this Code and the authority's ErrorInfo reason; the error. */
async function refused(promise, code, reason) {
  let caught;
  await assert.rejects(promise, (error) => {
    caught = error;
    return true;
  });
  assert.ok(caught instanceof ConnectError, `not a ConnectError: ${caught}`);
  assert.equal(caught.code, code, `${Code[caught.code]} (${caught.rawMessage}), not ${Code[code]}`);
  const info = errorInfo(caught);
  assert.ok(info, `no ErrorInfo of ${ERROR_DOMAIN} in ${JSON.stringify(caught.details)}`);
  assert.equal(info.reason, reason);
  return caught;
}

/** A plain JS object (what protobuf-es gives for a google.protobuf.Struct field). */
function assertPlainObject(value) {
  assert.equal(typeof value, 'object');
  assert.ok(value !== null);
  assert.equal(Object.getPrototypeOf(value), Object.prototype);
  assert.equal(value.$typeName, undefined);
}

/** A google.protobuf.Timestamp within [from, to] (ms; the token times are whole seconds). */
function assertTime(timestamp, from, to) {
  assert.equal(timestamp?.$typeName, 'google.protobuf.Timestamp');
  assert.equal(typeof timestamp.seconds, 'bigint');
  const date = timestampDate(timestamp);
  assert.ok(date instanceof Date);
  assert.ok(
    date.getTime() >= from - 1000,
    `${date.toISOString()} is before ${new Date(from).toISOString()}`,
  );
  assert.ok(
    date.getTime() <= to + 1000,
    `${date.toISOString()} is after ${new Date(to).toISOString()}`,
  );
  return date;
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

let authority;
let issuer;

before(async () => {
  authority = await startAuthority();
  issuer = `http://127.0.0.1:${authority.httpPort}`;
});

after(async () => {
  if (authority) {
    const { code } = await authority.stop();
    assert.equal(code, 0, `the authority did not stop cleanly:\n${authority.log.join('\n')}`);
  }
});

for (const protocol of PROTOCOLS) {
  describe(`over ${protocol}`, () => {
    const called = new Set(); // every RPC these tests call, as the transport sees it
    const record = (next) => (request) => {
      called.add(request.method.name);
      return next(request);
    };
    let client;
    let httpJwks;
    const user = (name) => `${protocol}-${name}`;

    before(() => {
      const port = protocol === 'grpc' ? authority.grpcPort : authority.httpPort;
      const transport = authorityTransport(protocol, `http://127.0.0.1:${port}`, {
        apiKey: API_KEY,
        interceptors: [record],
      });
      client = createAuthorityClient(transport);
      httpJwks = createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`));
    });

    it('creates a session: payload and data as objects, Timestamps; jose verifies the token with the HTTP JWKS and GetJwks keys', async () => {
      const before = Date.now();
      const created = await client.createNewSession({
        userId: user('42'),
        accessTokenPayload: { role: 'admin', tags: ['a', 'b'], nested: { n: 1.5, ok: true } },
        sessionDataInDatabase: { cart: 3, note: null },
        clientMetadata: { ip: '203.0.113.7', userAgent: 'node-test', device: protocol },
      });
      const now = Date.now();
      const handle = created.session.sessionHandle;
      const token = created.accessToken.token;
      assert.equal(created.session.userId, user('42'));
      assert.equal(created.session.tenantId, 'public');
      assert.match(handle, /^[0-9a-f-]{36}$/);
      // The payload is a plain object: custom claims as given, protected claims beside them.
      const payload = created.session.accessTokenPayload;
      assertPlainObject(payload);
      assert.equal(payload.role, 'admin');
      assert.deepEqual(payload.tags, ['a', 'b']);
      assert.deepEqual(payload.nested, { n: 1.5, ok: true });
      assert.equal(payload.sub, user('42'));
      assert.equal(payload.sessionHandle, handle);
      // No anti-CSRF token (mode NONE): an optional string left out, not "".
      assert.equal(created.antiCsrfToken, undefined);
      assert.equal('antiCsrfToken' in created, false);
      // Times are Timestamps: the access token's hour, the refresh token's days.
      assertTime(created.accessToken.createTime, before, now);
      const accessExpiry = assertTime(
        created.accessToken.expireTime,
        before + HOUR_MS,
        now + HOUR_MS,
      );
      const refreshExpiry = timestampDate(created.refreshToken.expireTime);
      assert.ok(refreshExpiry > accessExpiry);
      assert.ok(refreshExpiry.getTime() >= before + DAY_MS);

      const header = decodeProtectedHeader(token);
      assert.equal(header.version, '5');
      assert.equal(header.alg, 'RS256');
      const verified = await jwtVerify(token, httpJwks, { issuer, algorithms: ['RS256'] });
      assert.equal(verified.protectedHeader.kid, header.kid);
      assert.equal(verified.payload.sub, user('42'));
      assert.equal(verified.payload.sessionHandle, handle);
      assert.equal(verified.payload.role, 'admin');
      assert.equal(verified.payload.tId, 'public');
      assert.equal(verified.payload.exp * 1000, timestampMs(created.accessToken.expireTime));
      assert.deepEqual(verified.payload, payload);

      // GetJwks: the same keys as the HTTP JWKS, with a Duration to cache them for.
      const rpcJwks = await jwks(client);
      assert.ok(rpcJwks.keys.some((key) => key.kid === header.kid));
      assert.ok(rpcJwks.maxAgeMs > 60_000);
      const local = await jwtVerify(token, createLocalJWKSet(rpcJwks), { issuer });
      assert.deepEqual(local.payload, verified.payload);
      const http = await (await fetch(`${issuer}/.well-known/jwks.json`)).json();
      assert.deepEqual(
        http.keys.map((key) => key.kid).sort(),
        rpcJwks.keys.map((key) => key.kid).sort(),
      );
      assert.deepEqual(
        rpcJwks.keys.find((key) => key.kid === header.kid),
        http.keys.find((key) => key.kid === header.kid),
      );

      // One changed character in the signature and jose refuses it.
      const [head, body, signature] = token.split('.');
      const forged = `${head}.${body}.${signature.startsWith('A') ? 'B' : 'A'}${signature.slice(1)}`;
      await assert.rejects(jwtVerify(forged, createLocalJWKSet(rpcJwks)), {
        code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
      });

      // The authority agrees, and has the session's data as objects.
      const session = await client.getSession({ accessToken: token, checkDatabase: true });
      assert.equal(session.session.userId, user('42'));
      assert.deepEqual(session.session.accessTokenPayload, payload);
      assert.equal(session.accessToken.token, token);
      assert.equal(timestampMs(session.accessToken.expireTime), accessExpiry.getTime());
      const { sessionInformation: info } = await client.getSessionInformation({
        sessionHandle: handle,
      });
      assert.equal(info.userId, user('42'));
      assert.equal(info.tenantId, 'public');
      assertPlainObject(info.sessionDataInDatabase);
      assert.deepEqual(info.sessionDataInDatabase, { cart: 3, note: null });
      assert.deepEqual(info.customClaimsInAccessTokenPayload, {
        role: 'admin',
        tags: ['a', 'b'],
        nested: { n: 1.5, ok: true },
      });
      assertTime(info.createTime, before, now);
      assert.equal(info.expireTime.seconds, created.refreshToken.expireTime.seconds);
    });

    it('refreshes; the old refresh token within the grace period gives the same successor', async () => {
      const created = await client.createNewSession({ userId: user('7') });
      const first = await client.refreshSession({ refreshToken: created.refreshToken.token });
      assert.equal(first.session.sessionHandle, created.session.sessionHandle);
      assert.notEqual(first.refreshToken.token, created.refreshToken.token);
      assert.notEqual(first.accessToken.token, created.accessToken.token);
      assert.ok(
        timestampMs(first.refreshToken.expireTime) >= timestampMs(created.refreshToken.expireTime),
      );
      const keys = createLocalJWKSet(await jwks(client));
      const { payload } = await jwtVerify(first.accessToken.token, keys, { issuer });
      assert.equal(payload.sub, user('7'));
      assert.equal(payload.sessionHandle, created.session.sessionHandle);
      assert.deepEqual(first.session.accessTokenPayload, payload);

      // A retry with the old token (a lost response): the same successor, no theft.
      const again = await client.refreshSession({ refreshToken: created.refreshToken.token });
      assert.equal(again.refreshToken.token, first.refreshToken.token);

      // The successor rotates on as usual, and the session is still there.
      const next = await client.refreshSession({ refreshToken: first.refreshToken.token });
      assert.notEqual(next.refreshToken.token, first.refreshToken.token);
      const info = await client.getSessionInformation({
        sessionHandle: created.session.sessionHandle,
      });
      assert.equal(info.sessionInformation.userId, user('7'));
    });

    it('detects theft: T0 reused after T1 and T2 is PermissionDenied with ErrorInfo TOKEN_THEFT_DETECTED, and revokes the session', async () => {
      const t0 = await client.createNewSession({ userId: user('9') });
      const handle = t0.session.sessionHandle;
      const t1 = await client.refreshSession({ refreshToken: t0.refreshToken.token });
      const t2 = await client.refreshSession({ refreshToken: t1.refreshToken.token });

      const theft = await refused(
        client.refreshSession({ refreshToken: t0.refreshToken.token }),
        Code.PermissionDenied,
        'TOKEN_THEFT_DETECTED',
      );
      const info = errorInfo(theft);
      assert.equal(info.$typeName, 'google.rpc.ErrorInfo');
      assert.equal(info.domain, 'session-authority');
      assert.deepEqual(info.metadata, { sessionHandle: handle, userId: user('9') });

      // The session is gone: no information, no refresh, no verification against the database.
      const gone = await client.getSessionInformation({ sessionHandle: handle });
      assert.equal(gone.sessionInformation, undefined);
      const handles = await client.getAllSessionHandlesForUser({ userId: user('9') });
      assert.deepEqual(handles.sessionHandles, []);
      const unauthorised = await refused(
        client.refreshSession({ refreshToken: t2.refreshToken.token }),
        Code.Unauthenticated,
        'UNAUTHORISED',
      );
      assert.equal(errorInfo(unauthorised).metadata.clearTokens, 'true');
      await refused(
        client.getSession({ accessToken: t2.accessToken.token, checkDatabase: true }),
        Code.Unauthenticated,
        'UNAUTHORISED',
      );
      // Without checkDatabase the token still verifies: it is valid until it expires.
      const local = await client.getSession({ accessToken: t2.accessToken.token });
      assert.equal(local.session.sessionHandle, handle);
    });

    it('reports errors as ConnectErrors with their details (UNAUTHORISED, INVALID_ARGUMENT with BadRequest, API_KEY_INVALID)', async () => {
      await refused(
        client.getSession({ accessToken: 'not-a-jwt' }),
        Code.Unauthenticated,
        'UNAUTHORISED',
      );
      const invalid = await refused(
        client.createNewSession({ userId: '' }),
        Code.InvalidArgument,
        'INVALID_ARGUMENT',
      );
      assert.equal(errorInfo(invalid).metadata.field, 'user_id');
      const violations = badRequest(invalid)?.fieldViolations ?? [];
      assert.deepEqual(
        violations.map((violation) => violation.field),
        ['user_id'],
      );
      assert.match(violations[0].description, /user_id/);
      // A protected claim in a payload.
      const protectedClaim = await refused(
        client.mergeIntoAccessTokenPayload({
          sessionHandle: 'any',
          accessTokenPayloadUpdate: { sub: 'someone-else' },
        }),
        Code.InvalidArgument,
        'INVALID_ARGUMENT',
      );
      assert.ok(errorInfo(protectedClaim).metadata.field);

      // A Struct is a JsonObject: undefined (or a function) is no JSON value. It is
      // not dropped on the way but sent as a Value of no kind, which is refused.
      const undefinedValue = await refused(
        client.createNewSession({ userId: user('42'), accessTokenPayload: { role: undefined } }),
        Code.InvalidArgument,
        'INVALID_ARGUMENT',
      );
      assert.equal(errorInfo(undefinedValue).metadata.field, 'access_token_payload');

      // Without the API key (or with a wrong one), every protocol is refused the same way.
      const port = protocol === 'grpc' ? authority.grpcPort : authority.httpPort;
      for (const apiKey of [null, `${API_KEY}x`]) {
        const stranger = createAuthorityClient(
          authorityTransport(protocol, `http://127.0.0.1:${port}`, { apiKey }),
        );
        await refused(stranger.getJwks({}), Code.Unauthenticated, 'API_KEY_INVALID');
      }
    });

    it('updates session data and the payload: UpdateSessionDataInDatabase, MergeIntoAccessTokenPayload (null removes), RegenerateAccessToken', async () => {
      const created = await client.createNewSession({
        userId: user('data'),
        accessTokenPayload: { role: 'admin', lang: 'en' },
        sessionDataInDatabase: { cart: 1 },
      });
      const sessionHandle = created.session.sessionHandle;
      const information = async () =>
        (await client.getSessionInformation({ sessionHandle })).sessionInformation;

      const updated = await client.updateSessionDataInDatabase({
        sessionHandle,
        newSessionData: { cart: 2, items: ['tea', 'scones'], address: { city: 'Bath' } },
      });
      assert.equal(updated.updated, true);
      assert.deepEqual((await information()).sessionDataInDatabase, {
        cart: 2,
        items: ['tea', 'scones'],
        address: { city: 'Bath' },
      });
      const nobody = await client.updateSessionDataInDatabase({
        sessionHandle: 'no-such-session',
        newSessionData: {},
      });
      assert.equal(nobody.updated, false); // explicit presence: false, not undefined

      const merged = await client.mergeIntoAccessTokenPayload({
        sessionHandle,
        accessTokenPayloadUpdate: { theme: 'dark', role: null },
      });
      assert.equal(merged.updated, true);
      assert.deepEqual((await information()).customClaimsInAccessTokenPayload, {
        lang: 'en',
        theme: 'dark',
      });
      const mergedNowhere = await client.mergeIntoAccessTokenPayload({
        sessionHandle: 'no-such-session',
        accessTokenPayloadUpdate: { theme: 'dark' },
      });
      assert.equal(mergedNowhere.updated, false);

      // The token issued before the merge still says role admin; a regenerated one,
      // with the same expiry, carries the merged claims.
      const regenerated = await client.regenerateAccessToken({
        accessToken: created.accessToken.token,
      });
      assert.equal(regenerated.sessionExists, true);
      assert.equal(regenerated.session.sessionHandle, sessionHandle);
      assert.equal(regenerated.session.accessTokenPayload.theme, 'dark');
      assert.equal('role' in regenerated.session.accessTokenPayload, false);
      assert.equal(
        timestampMs(regenerated.accessToken.expireTime),
        timestampMs(created.accessToken.expireTime),
      );
      const { payload } = await jwtVerify(regenerated.accessToken.token, httpJwks, { issuer });
      assert.equal(payload.theme, 'dark');
      assert.equal(payload.lang, 'en');
      assert.equal(payload.role, undefined);

      // new_access_token_payload given: it replaces the custom claims; {} is not "absent".
      const replaced = await client.regenerateAccessToken({
        accessToken: regenerated.accessToken.token,
        newAccessTokenPayload: { plan: 'pro' },
      });
      assert.equal(replaced.session.accessTokenPayload.plan, 'pro');
      assert.equal(replaced.session.accessTokenPayload.theme, undefined);
      assert.deepEqual((await information()).customClaimsInAccessTokenPayload, { plan: 'pro' });
      const emptied = await client.regenerateAccessToken({
        accessToken: replaced.accessToken.token,
        newAccessTokenPayload: {},
      });
      assert.equal(emptied.session.accessTokenPayload.plan, undefined);
      assert.deepEqual((await information()).customClaimsInAccessTokenPayload, {});

      // A revoked session: sessionExists false, nothing else set.
      await client.revokeSession({ sessionHandle });
      const afterRevoke = await client.regenerateAccessToken({
        accessToken: created.accessToken.token,
      });
      assert.equal(afterRevoke.sessionExists, false);
      assert.equal(afterRevoke.session, undefined);
      assert.equal(afterRevoke.accessToken, undefined);
    });

    it('sets, reads and removes a claim: SetClaimValue, GetClaimValue, RemoveClaim (google.protobuf.Value)', async () => {
      const created = await client.createNewSession({ userId: user('claims') });
      const sessionHandle = created.session.sessionHandle;
      const before = Date.now();
      const set = await client.setClaimValue({
        sessionHandle,
        claimKey: 'plan',
        value: toValue({ tier: 'gold', seats: 5, features: ['sso'] }),
      });
      assert.equal(set.updated, true);
      const read = await client.getClaimValue({ sessionHandle, claimKey: 'plan' });
      assert.equal(read.sessionExists, true);
      assert.equal(read.value.$typeName, 'google.protobuf.Value');
      assert.equal(read.value.kind.case, 'structValue');
      assert.deepEqual(fromValue(read.value), { tier: 'gold', seats: 5, features: ['sso'] });
      // Stored in the payload as SuperTokens keeps a claim: { v: value, t: fetched ms }.
      const { sessionInformation } = await client.getSessionInformation({ sessionHandle });
      const stored = sessionInformation.customClaimsInAccessTokenPayload.plan;
      assert.deepEqual(stored.v, { tier: 'gold', seats: 5, features: ['sso'] });
      assert.ok(stored.t >= before - 1000 && stored.t <= Date.now() + 1000);

      // Scalars travel as Values too: false is not absent.
      await client.setClaimValue({ sessionHandle, claimKey: 'beta', value: toValue(false) });
      const beta = await client.getClaimValue({ sessionHandle, claimKey: 'beta' });
      assert.equal(fromValue(beta.value), false);

      const removed = await client.removeClaim({ sessionHandle, claimKey: 'plan' });
      assert.equal(removed.updated, true);
      const absent = await client.getClaimValue({ sessionHandle, claimKey: 'plan' });
      assert.equal(absent.sessionExists, true);
      assert.equal(absent.value, undefined);

      const nowhere = await client.getClaimValue({
        sessionHandle: 'no-such-session',
        claimKey: 'plan',
      });
      assert.equal(nowhere.sessionExists, false);
      const setNowhere = await client.setClaimValue({
        sessionHandle: 'no-such-session',
        claimKey: 'plan',
        value: toValue('gold'),
      });
      assert.equal(setNowhere.updated, false);
      const removedNowhere = await client.removeClaim({
        sessionHandle: 'no-such-session',
        claimKey: 'plan',
      });
      assert.equal(removedNowhere.updated, false);
    });

    it('validates claims: ValidateClaims, ValidateClaimsInJwtPayload, GetGlobalClaimValidators, and GetSession INVALID_CLAIMS with the InvalidClaims detail', async () => {
      const now = Date.now();
      const payload = {
        role: { v: 'admin', t: now },
        perms: { v: ['read'], t: now },
        email: { v: true, t: now - 600_000 },
      };
      const validators = [
        { claimKey: 'role', kind: ClaimValidatorKind.HAS_VALUE, value: toValue('admin') },
        {
          id: 'can-write',
          claimKey: 'perms',
          kind: ClaimValidatorKind.INCLUDES,
          value: toValue('write'),
        },
        {
          claimKey: 'email',
          kind: ClaimValidatorKind.HAS_VALUE,
          value: toValue(true),
          maxAge: durationFromMs(60_000),
        },
        { claimKey: 'mfa', kind: ClaimValidatorKind.INCLUDES_ANY, value: toValue(['totp', 'otp']) },
      ];
      const expected = [
        {
          id: 'can-write',
          reason: { message: 'wrong value', expectedToInclude: 'write', actualValue: ['read'] },
        },
        { id: 'email', reason: { message: 'expired', maxAgeInSeconds: 60 } },
        {
          id: 'mfa',
          reason: {
            message: 'value does not exist',
            expectedToIncludeAtLeastOneOf: ['totp', 'otp'],
          },
        },
      ];
      const failures = (list) =>
        list.map(({ id, reason }) => {
          const json = fromValue(reason);
          delete json.ageInSeconds; // a float that depends on the clock
          return { id, reason: json };
        });

      const checked = await client.validateClaims({
        accessTokenPayload: payload,
        claimValidators: validators,
      });
      assert.deepEqual(failures(checked.invalidClaims), expected);
      const age = fromValue(checked.invalidClaims[1].reason).ageInSeconds;
      assert.ok(age >= 599 && age < 700, `ageInSeconds ${age}`);
      const inJwt = await client.validateClaimsInJwtPayload({
        jwtPayload: payload,
        claimValidators: validators,
      });
      assert.deepEqual(failures(inJwt.invalidClaims), expected);
      const passing = await client.validateClaims({
        accessTokenPayload: payload,
        claimValidators: validators.slice(0, 1),
      });
      assert.deepEqual(passing.invalidClaims, []);

      // This authority has no global validators: GetSession runs none unless given some.
      const global = await client.getGlobalClaimValidators({});
      assert.deepEqual(global.claimValidators, []);

      const created = await client.createNewSession({
        userId: user('validated'),
        accessTokenPayload: { role: { v: 'user', t: now } },
      });
      const accessToken = created.accessToken.token;
      const overridden = await refused(
        client.getSession({
          accessToken,
          overrideGlobalClaimValidators: { validators: validators.slice(0, 1) },
        }),
        Code.PermissionDenied,
        'INVALID_CLAIMS',
      );
      assert.deepEqual(
        invalidClaims(overridden).map(({ id, reason }) => ({ id, reason: fromValue(reason) })),
        [
          {
            id: 'role',
            reason: { message: 'wrong value', expectedValue: 'admin', actualValue: 'user' },
          },
        ],
      );
      // An empty list is "run none", not "not given".
      const none = await client.getSession({
        accessToken,
        overrideGlobalClaimValidators: { validators: [] },
      });
      assert.equal(none.session.userId, user('validated'));
    });

    it('revokes: RevokeSession (revoked is a boolean), RevokeMultipleSessions, RevokeAllSessionsForUser, GetAllSessionHandlesForUser', async () => {
      const owner = user('revoked');
      const handles = [];
      for (let i = 0; i < 5; i += 1) {
        handles.push((await client.createNewSession({ userId: owner })).session.sessionHandle);
        await sleep(3); // creation times in whole ms: no two alike, so the order is defined
      }
      const all = await client.getAllSessionHandlesForUser({ userId: owner });
      assert.deepEqual(all.sessionHandles, handles); // oldest first

      const first = await client.revokeSession({ sessionHandle: handles[0] });
      assert.equal(first.revoked, true);
      const second = await client.revokeSession({ sessionHandle: handles[0] });
      assert.equal(second.revoked, false);
      assert.equal(typeof second.revoked, 'boolean');

      const multiple = await client.revokeMultipleSessions({
        sessionHandles: [handles[0], handles[1], handles[2], 'no-such-session'],
      });
      assert.deepEqual([...multiple.revokedSessionHandles].sort(), [handles[1], handles[2]].sort());

      const rest = await client.revokeAllSessionsForUser({ userId: owner });
      assert.deepEqual([...rest.revokedSessionHandles].sort(), [handles[3], handles[4]].sort());
      const none = await client.getAllSessionHandlesForUser({ userId: owner });
      assert.deepEqual(none.sessionHandles, []);
      const again = await client.revokeAllSessionsForUser({ userId: owner });
      assert.deepEqual(again.revokedSessionHandles, []);
    });

    it('lists sessions page by page with client metadata and Timestamps, and signs out elsewhere: ListSessions, RevokeOtherSessions', async () => {
      const owner = user('devices');
      const before = Date.now();
      const created = [];
      for (const device of ['laptop', 'phone', 'tablet']) {
        created.push(
          await client.createNewSession({
            userId: owner,
            clientMetadata: { ip: '2001:db8::1', userAgent: `agent ${device}`, device },
          }),
        );
        await sleep(3); // creation times in whole ms: no two alike, so the order is defined
      }
      // Refresh the laptop's session: its last refresh moves on.
      await client.refreshSession({ refreshToken: created[0].refreshToken.token });
      const now = Date.now();

      const page1 = await client.listSessions({ userId: owner, pageSize: 2 });
      assert.equal(page1.totalSize, 3);
      assert.equal(page1.sessions.length, 2);
      assert.notEqual(page1.nextPageToken, '');
      const page2 = await client.listSessions({
        userId: owner,
        pageSize: 2,
        pageToken: page1.nextPageToken,
      });
      assert.equal(page2.totalSize, 3);
      assert.equal(page2.nextPageToken, '');
      const listed = [...page1.sessions, ...page2.sessions];
      // Newest first.
      assert.deepEqual(
        listed.map((summary) => summary.clientMetadata.device),
        ['tablet', 'phone', 'laptop'],
      );
      for (const summary of listed) {
        assert.equal(summary.userId, owner);
        assert.equal(summary.clientMetadata.ip, '2001:db8::1');
        assert.equal(summary.clientMetadata.userAgent, `agent ${summary.clientMetadata.device}`);
        const createTime = assertTime(summary.createTime, before, now);
        const lastRefresh = assertTime(summary.lastRefreshTime, before, now);
        assert.ok(lastRefresh >= createTime);
        assert.ok(timestampDate(summary.expireTime).getTime() > now + HOUR_MS);
      }
      const laptop = listed[2];
      assert.equal(laptop.sessionHandle, created[0].session.sessionHandle);
      assert.ok(timestampMs(laptop.lastRefreshTime) >= timestampMs(laptop.createTime));
      // An empty listing still says 0 (total_size is always set).
      const empty = await client.listSessions({ userId: user('nobody') });
      assert.deepEqual(empty.sessions, []);
      assert.equal(empty.totalSize, 0);

      const kept = created[1].session.sessionHandle;
      const others = await client.revokeOtherSessions({ sessionHandle: kept });
      assert.deepEqual(
        [...others.revokedSessionHandles].sort(),
        [created[0].session.sessionHandle, created[2].session.sessionHandle].sort(),
      );
      const left = await client.listSessions({ userId: owner });
      assert.deepEqual(
        left.sessions.map((summary) => summary.sessionHandle),
        [kept],
      );
      assert.equal(left.totalSize, 1);
    });

    it('signs JWTs that jose verifies: CreateJwt (Duration validity), GetOpenIdDiscoveryConfiguration', async () => {
      const discovery = await client.getOpenIdDiscoveryConfiguration({});
      assert.equal(discovery.issuer, issuer);
      assert.equal(discovery.jwksUri, `${issuer}/.well-known/jwks.json`);
      assertPlainObject(discovery.document);
      assert.equal(discovery.document.issuer, issuer);
      assert.equal(discovery.document.jwks_uri, discovery.jwksUri);
      const http = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
      assert.deepEqual(discovery.document, http);

      const created = await client.createJwt({
        payload: { scope: ['orders:read'], tenant: 'acme' },
        validity: durationFromMs(60_000),
      });
      const { payload, protectedHeader } = await jwtVerify(created.jwt, httpJwks, { issuer });
      assert.deepEqual(payload.scope, ['orders:read']);
      assert.equal(payload.tenant, 'acme');
      assert.equal(payload.stt, 1);
      assert.equal(payload.exp - payload.iat, 60);
      // The static key unless asked otherwise; useStaticSigningKey: false takes the
      // rotating one. Both are in the JWKS.
      const dynamic = await client.createJwt({
        payload: { scope: [] },
        useStaticSigningKey: false,
      });
      const dynamicHeader = decodeProtectedHeader(dynamic.jwt);
      assert.notEqual(dynamicHeader.kid, protectedHeader.kid);
      const rotating = await jwtVerify(dynamic.jwt, httpJwks, { issuer });
      // No validity: 100 years, as in SuperTokens.
      assert.ok(rotating.payload.exp - rotating.payload.iat >= 99 * 365 * 24 * 3600);
      // GetJwks's max_age is a Duration (how long until the keys may change: it
      // shrinks as time passes).
      const { maxAge } = await client.getJwks({});
      assert.equal(maxAge.$typeName, 'google.protobuf.Duration');
      assert.equal(typeof maxAge.seconds, 'bigint');
      assert.ok(durationMs(maxAge) > 60_000 && durationMs(maxAge) <= 400 * DAY_MS);

      // A session-shaped payload is refused.
      await refused(
        client.createJwt({ payload: { sessionHandle: 'x', sub: 'y', refreshTokenHash1: 'z' } }),
        Code.InvalidArgument,
        'INVALID_ARGUMENT',
      );
    });

    it('streams revocations: WatchRevocations sees one arrive, and resumes after a cursor', async () => {
      const created = await client.createNewSession({ userId: user('watched') });
      const handle = created.session.sessionHandle;
      let revokedAt = null;
      let seen = null;
      let messages = 0;
      let lastCursor = -1n;
      // afterCursor 0: the backlog (earlier tests' revocations), then live ones and
      // heartbeats. The revocation is made once the stream has said something.
      for await (const message of watchRevocations(client, {
        afterCursor: 0n,
        signal: AbortSignal.timeout(STREAM_TIMEOUT_MS),
      })) {
        messages += 1;
        assert.equal(message.$typeName, 'session_authority.v1.WatchRevocationsResponse');
        assert.equal(typeof message.cursor, 'bigint');
        assert.ok(message.cursor >= lastCursor);
        lastCursor = message.cursor;
        seen = message.revocations.find((revocation) => revocation.sessionHandle === handle);
        if (seen) break; // watchRevocations cancels the call
        if (revokedAt === null) {
          revokedAt = Date.now();
          const revoked = await client.revokeSession({ sessionHandle: handle });
          assert.equal(revoked.revoked, true);
        }
      }
      assert.ok(seen, `no revocation of ${handle} in ${messages} messages`);
      assert.ok(revokedAt !== null, 'the revocation arrived before it was made');
      assert.equal(seen.userId, user('watched'));
      assert.equal(typeof seen.cursor, 'bigint');
      assert.ok(seen.cursor > 0n && seen.cursor <= lastCursor);
      const revokeTime = assertTime(seen.revokeTime, revokedAt, Date.now());
      // No access token of the session outlives this; the one issued expires then.
      assert.ok(timestampDate(seen.accessTokensExpireTime) >= revokeTime);
      assert.ok(
        timestampMs(seen.accessTokensExpireTime) >= timestampMs(created.accessToken.expireTime),
      );

      // Resuming after the cursor just before it starts with this revocation.
      let resumed = null;
      for await (const message of watchRevocations(client, {
        afterCursor: seen.cursor - 1n,
        signal: AbortSignal.timeout(STREAM_TIMEOUT_MS),
      })) {
        if (message.revocations.length === 0) continue; // a heartbeat
        resumed = message.revocations[0];
        break;
      }
      assert.equal(resumed?.sessionHandle, handle);
      assert.equal(resumed.cursor, seen.cursor);
    });

    it('called every RPC of SessionService', () => {
      const every = SessionService.methods.map((method) => method.name).sort();
      assert.equal(every.length, 23);
      assert.deepEqual([...called].sort(), every);
    });
  });
}
