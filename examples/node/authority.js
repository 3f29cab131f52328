// A Node.js client of the session authority, built from the same protos as the
// Python SDK: protos/session_authority/v1/session_service.proto, loaded at run
// time with @grpc/proto-loader. No generated code.
//
//   const authority = new AuthorityClient('127.0.0.1:50051');
//   const created = await authority.createNewSession({ userId: 'user-1' });
//   const refreshed = await authority.refreshSession({ refreshToken: created.refreshToken.token });
//
// Field names are camelCase (keepCase: false), int64 fields are decimal strings
// (longs: String) so that millisecond timestamps stay exact, and enums are their
// names. A failed call rejects with an AuthorityError carrying the gRPC status
// and the authority's google.rpc.ErrorInfo (reason, metadata), e.g. reason
// TRY_REFRESH_TOKEN, UNAUTHORISED or TOKEN_THEFT_DETECTED.

import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const PROTO_ROOT = path.resolve(HERE, '../../protos');
export const PROTO_FILE = 'session_authority/v1/session_service.proto';
export const ERROR_DOMAIN = 'session-authority';

export const LOADER_OPTIONS = Object.freeze({
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
});

const definition = protoLoader.loadSync(PROTO_FILE, LOADER_OPTIONS);
const proto = grpc.loadPackageDefinition(definition);
const SessionService = proto.session_authority.v1.SessionService;

const lowerFirst = (name) => name[0].toLowerCase() + name.slice(1);

/** A call the authority (or the network) refused. */
export class AuthorityError extends Error {
  constructor(serviceError) {
    const details = decodeStatusDetails(
      serviceError.metadata?.get('grpc-status-details-bin')?.[0],
    );
    const info = details?.errorInfos.find((i) => i.domain === ERROR_DOMAIN) ?? null;
    super(details?.message || serviceError.details || serviceError.message);
    this.name = 'AuthorityError';
    this.code = serviceError.code;
    this.codeName = grpc.status[serviceError.code] ?? String(serviceError.code);
    this.reason = info?.reason ?? null;
    this.domain = info?.domain ?? null;
    this.metadata = info?.metadata ?? {};
  }
}

/**
 * Every unary RPC of SessionService as a promise-returning method named in
 * camelCase (createNewSession, getSession, refreshSession, getJwks, ...).
 */
export class AuthorityClient {
  #stub;
  #metadata;
  #deadlineMs;

  constructor(
    target,
    { apiKey = null, credentials = grpc.credentials.createInsecure(), deadlineMs = 10_000 } = {},
  ) {
    this.#stub = new SessionService(target, credentials);
    this.#metadata = new grpc.Metadata();
    if (apiKey) this.#metadata.set('authorization', `Bearer ${apiKey}`);
    this.#deadlineMs = deadlineMs;
    for (const [name, method] of Object.entries(SessionService.service)) {
      if (!method.requestStream && !method.responseStream) {
        this[lowerFirst(name)] = (request = {}) => this.#unary(name, request);
      }
    }
  }

  #unary(name, request) {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.#deadlineMs);
      this.#stub[name](request, this.#metadata.clone(), { deadline }, (error, response) => {
        if (error) reject(new AuthorityError(error));
        else resolve(response);
      });
    });
  }

  /** The JWKS from the GetJwks RPC, as JSON Web Keys (empty fields dropped). */
  async jwks() {
    const response = await this.getJwks({});
    const keys = response.keys.map((key) =>
      Object.fromEntries(Object.entries(key).filter(([, value]) => value !== '')),
    );
    return { keys, maxAgeSeconds: Number(response.maxAgeSeconds) };
  }

  close() {
    this.#stub.close();
  }
}

// --- google.rpc.Status in grpc-status-details-bin, decoded by hand ---------------
// Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
// Any { string type_url = 1; bytes value = 2; }
// ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }

const ERROR_INFO_TYPE = 'type.googleapis.com/google.rpc.ErrorInfo';

function* fields(bytes) {
  let offset = 0;
  const varint = () => {
    let value = 0;
    let scale = 1;
    for (;;) {
      if (offset >= bytes.length) throw new Error('truncated protobuf varint');
      const byte = bytes[offset++];
      value += (byte & 0x7f) * scale;
      scale *= 128;
      if (byte < 0x80) return value;
    }
  };
  while (offset < bytes.length) {
    const tag = varint();
    const number = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (wireType === 0) {
      yield [number, varint()];
    } else if (wireType === 2) {
      const length = varint();
      if (offset + length > bytes.length) throw new Error('truncated protobuf field');
      yield [number, bytes.subarray(offset, offset + length)];
      offset += length;
    } else if (wireType === 1 || wireType === 5) {
      offset += wireType === 1 ? 8 : 4; // fixed64/fixed32: nothing we read
    } else {
      throw new Error(`unsupported protobuf wire type ${wireType}`);
    }
  }
}

const text = (bytes) => Buffer.from(bytes).toString('utf8');

function decodeErrorInfo(bytes) {
  const info = { reason: '', domain: '', metadata: {} };
  for (const [number, value] of fields(bytes)) {
    if (number === 1) info.reason = text(value);
    else if (number === 2) info.domain = text(value);
    else if (number === 3) {
      let key = '';
      let entry = '';
      for (const [n, v] of fields(value)) {
        if (n === 1) key = text(v);
        else if (n === 2) entry = text(v);
      }
      info.metadata[key] = entry;
    }
  }
  return info;
}

/** google.rpc.Status bytes -> { code, message, errorInfos } (null if absent). */
export function decodeStatusDetails(bytes) {
  if (!bytes) return null;
  const status = { code: 0, message: '', errorInfos: [] };
  for (const [number, value] of fields(bytes)) {
    if (number === 1) status.code = value;
    else if (number === 2) status.message = text(value);
    else if (number === 3) {
      let typeUrl = '';
      let payload = new Uint8Array();
      for (const [n, v] of fields(value)) {
        if (n === 1) typeUrl = text(v);
        else if (n === 2) payload = v;
      }
      if (typeUrl === ERROR_INFO_TYPE) status.errorInfos.push(decodeErrorInfo(payload));
    }
  }
  return status;
}
