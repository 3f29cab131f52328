// A Node.js client of the session authority with the Connect-ES runtime
// (@connectrpc/connect, @connectrpc/connect-node) and the code that
// @bufbuild/protoc-gen-es generates from protos/ into gen/ (`make proto`).
//
// One client, three protocols: gRPC to the gRPC port, and Connect (JSON or binary)
// or gRPC-Web to the HTTP port, where the authority serves the same
// SessionService at /session_authority.v1.SessionService/<Method>.
//
//   const transport = authorityTransport('grpc', 'http://127.0.0.1:50051', { apiKey });
//   const authority = createAuthorityClient(transport);
//   const created = await authority.createNewSession({
//     userId: 'user-1',
//     accessTokenPayload: { role: 'admin' },        // a Struct is a plain JS object
//   });
//   timestampDate(created.accessToken.expireTime);  // a Timestamp, a Date with this
//
// A failed call rejects with a ConnectError: `code` (Code.PermissionDenied, ...)
// and details that errorInfo(), badRequest() and invalidClaims() below decode,
// e.g. errorInfo(error).reason === 'TOKEN_THEFT_DETECTED'.

import { createClient } from '@connectrpc/connect';
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from '@connectrpc/connect-node';
import { fromJson, toJson } from '@bufbuild/protobuf';
import { ValueSchema, durationMs } from '@bufbuild/protobuf/wkt';

import { BadRequestSchema, ErrorInfoSchema } from './gen/google/rpc/error_details_pb.js';
import {
  InvalidClaimsSchema,
  SessionService,
} from './gen/session_authority/v1/session_service_pb.js';

export { SessionService };

/** The ErrorInfo domain of every error the authority itself raises. */
export const ERROR_DOMAIN = 'session-authority';

/**
 * The protocols the authority speaks, by the name this module gives them:
 * gRPC (HTTP/2, the gRPC port, SESSION_AUTHORITY_LISTEN), and Connect with JSON
 * or binary protobuf and gRPC-Web (HTTP/1.1, the HTTP port,
 * SESSION_AUTHORITY_HTTP_LISTEN).
 */
export const PROTOCOLS = Object.freeze(['grpc', 'connect-json', 'connect-binary', 'grpc-web']);

/** An interceptor that sends the API key as `authorization: Bearer <key>`. */
export function bearer(apiKey) {
  return (next) => (request) => {
    request.header.set('authorization', `Bearer ${apiKey}`);
    return next(request);
  };
}

/**
 * A Transport to the authority at baseUrl (e.g. http://127.0.0.1:50051 for
 * 'grpc', http://127.0.0.1:8080 for the others). apiKey: sent with every call;
 * timeoutMs: each call's deadline unless the call passes its own timeoutMs;
 * interceptors: more interceptors, run after the API key's.
 */
export function authorityTransport(
  protocol,
  baseUrl,
  { apiKey = null, timeoutMs = 10_000, interceptors = [] } = {},
) {
  const options = {
    baseUrl,
    defaultTimeoutMs: timeoutMs,
    interceptors: [...(apiKey ? [bearer(apiKey)] : []), ...interceptors],
  };
  switch (protocol) {
    case 'grpc':
      return createGrpcTransport(options); // HTTP/2 only
    case 'connect-json':
      return createConnectTransport({ ...options, httpVersion: '1.1' });
    case 'connect-binary':
      return createConnectTransport({ ...options, httpVersion: '1.1', useBinaryFormat: true });
    case 'grpc-web':
      return createGrpcWebTransport({ ...options, httpVersion: '1.1' });
    default:
      throw new TypeError(`unknown protocol ${protocol}: one of ${PROTOCOLS.join(', ')}`);
  }
}

/**
 * A SessionService client: one promise-returning method per RPC, named in
 * lowerCamelCase (createNewSession, getSession, ..., getOpenIdDiscoveryConfiguration),
 * and watchRevocations as an async iterable.
 */
export function createAuthorityClient(transport) {
  return createClient(SessionService, transport);
}

/**
 * A JSON value as a google.protobuf.Value message, for the fields typed Value
 * (SetClaimValue's value, a ClaimValidator's value). protobuf-es gives Struct
 * fields as plain objects, but a Value field is a message: { kind: { case, value } }.
 */
export function toValue(json) {
  return fromJson(ValueSchema, json);
}

/** A google.protobuf.Value message as the JSON value it holds (undefined when absent). */
export function fromValue(value) {
  return value === undefined ? undefined : toJson(ValueSchema, value);
}

/**
 * WatchRevocations as an async iterable of WatchRevocationsResponse that cancels
 * the call when the loop is left (break, return, throw): connect-es does not, and
 * an unfinished call stays open until its deadline. No deadline here (a watch is
 * meant to stay open, and the transport's default would end it): pass a signal to
 * stop it. On a dropped stream, watch again after the last cursor seen.
 */
export async function* watchRevocations(client, { afterCursor = 0n, signal } = {}) {
  const leaving = new AbortController();
  try {
    yield* client.watchRevocations(
      { afterCursor },
      { signal: signal ? AbortSignal.any([leaving.signal, signal]) : leaving.signal, timeoutMs: 0 },
    );
  } finally {
    leaving.abort();
  }
}

/** The authority's google.rpc.ErrorInfo of a ConnectError, or undefined. */
export function errorInfo(error) {
  return error?.findDetails?.(ErrorInfoSchema).find((info) => info.domain === ERROR_DOMAIN);
}

/** The google.rpc.BadRequest detail of an INVALID_ARGUMENT error, or undefined. */
export function badRequest(error) {
  return error?.findDetails?.(BadRequestSchema)[0];
}

/** The failed validators of an INVALID_CLAIMS error (the InvalidClaims detail), or []. */
export function invalidClaims(error) {
  return error?.findDetails?.(InvalidClaimsSchema)[0]?.invalidClaims ?? [];
}

/**
 * The keys of GetJwks as RFC 7517 JSON Web Keys, ready for jose's
 * createLocalJWKSet: the response's messages carry every field of every key
 * type ("" when unused) and a $typeName, which a JWK must not have.
 */
export async function jwks(client) {
  const response = await client.getJwks({});
  const keys = response.keys.map((key) =>
    Object.fromEntries(
      Object.entries(key).filter(([name, value]) => name !== '$typeName' && value !== ''),
    ),
  );
  return { keys, maxAgeMs: response.maxAge ? durationMs(response.maxAge) : 0 };
}
