import { randomUUID } from "node:crypto";
import { RecordUsageRequest, EstimateTokensRequest } from "./gen/metering/v1/metering_service";
import { ApiFormat, type TokenUsage } from "./gen/metering/v1/types";

/** The largest response_json / request_json the service accepts. */
export const MAX_RAW_BYTES = 4 * 1024 * 1024;

/** The longest prompt_text / completion_text the service accepts, in characters. */
export const MAX_TEXT_CHARS = 1_000_000;

/** Short names of the provider wire formats (ApiFormat). */
export type ApiFormatName =
  | "auto"
  | "openai-chat"
  | "openai-responses"
  | "anthropic"
  | "gemini"
  | "workers-ai"
  | "dify";

const FORMAT_NAMES: Record<ApiFormatName, ApiFormat> = {
  auto: ApiFormat.API_FORMAT_UNSPECIFIED,
  "openai-chat": ApiFormat.API_FORMAT_OPENAI_CHAT_COMPLETIONS,
  "openai-responses": ApiFormat.API_FORMAT_OPENAI_RESPONSES,
  anthropic: ApiFormat.API_FORMAT_ANTHROPIC_MESSAGES,
  gemini: ApiFormat.API_FORMAT_GEMINI_GENERATE_CONTENT,
  "workers-ai": ApiFormat.API_FORMAT_WORKERS_AI,
  dify: ApiFormat.API_FORMAT_DIFY,
};

export function toApiFormat(f: ApiFormat | ApiFormatName | undefined): ApiFormat {
  if (f === undefined) return ApiFormat.API_FORMAT_UNSPECIFIED;
  if (typeof f === "number") return f;
  const v = FORMAT_NAMES[f];
  if (v === undefined) throw new TypeError(`unknown API format ${JSON.stringify(f)}`);
  return v;
}

/**
 * Keeps what metering needs of a streamed (SSE) provider response while the
 * relay passes the chunks on: the first event (Anthropic's message_start
 * carries the input usage there) and the last events (the usage chunk of
 * OpenAI, Anthropic's message_delta, Gemini's last usageMetadata), together
 * at most maxBytes, cut at event boundaries; and the response id and model
 * named by the first events. Feed it every chunk with push(); memory stays
 * bounded.
 */
export class SseTail {
  readonly maxBytes: number;
  private chunks: Buffer[] = [];
  private size = 0;
  private headAcc: Buffer | undefined = Buffer.alloc(0);
  private headScan = 0;
  private head: Buffer = Buffer.alloc(0);
  /** Total bytes seen. */
  totalBytes = 0;
  /** The response id of the first event that has one (e.g. "chatcmpl-..."). */
  id = "";
  /** The model named by the first event that names one. */
  model = "";

  constructor(maxBytes = 64 * 1024) {
    this.maxBytes = Math.max(4096, Math.min(maxBytes, MAX_RAW_BYTES));
  }

  push(chunk: Uint8Array | string): void {
    const buf = typeof chunk === "string" ? Buffer.from(chunk, "utf8") : Buffer.from(chunk);
    this.totalBytes += buf.length;
    if (this.headAcc) this.scanHead(buf);
    this.chunks.push(buf);
    this.size += buf.length;
    // Keep at most 2 x maxBytes buffered; cut to maxBytes on bytes().
    if (this.size > 2 * this.maxBytes) {
      const all = Buffer.concat(this.chunks);
      const kept = Buffer.from(all.subarray(all.length - this.maxBytes));
      this.chunks = [kept];
      this.size = kept.length;
    }
  }

  /** Parses the first events for the id and model, and keeps the first data event. */
  private scanHead(buf: Buffer): void {
    const acc = Buffer.concat([this.headAcc!, buf]);
    for (;;) {
      const b = eventBoundary(acc, this.headScan);
      if (!b) break;
      const event = acc.subarray(this.headScan, b.start).toString("utf8");
      const data = event
        .split(/\r?\n/)
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart())
        .join("\n");
      if (data && this.head.length === 0 && b.end <= this.maxBytes / 4) this.head = Buffer.from(acc.subarray(0, b.end));
      this.headScan = b.end;
      if (data && data !== "[DONE]") {
        try {
          const obj = JSON.parse(data) as unknown;
          if (!this.id) this.id = responseIdOf(obj);
          if (!this.model) this.model = modelOf(obj);
        } catch {
          // not JSON: ignore
        }
      }
      if (this.id && this.model) break;
    }
    // Done once the id and model are known, or after 64 KiB.
    this.headAcc = (this.id && this.model) || acc.length > 64 * 1024 ? undefined : acc;
  }

  /** The first event and the retained tail, each starting at an event boundary. */
  bytes(): Buffer {
    const all = Buffer.concat(this.chunks);
    if (this.totalBytes <= this.maxBytes) return all;
    const room = this.maxBytes - this.head.length;
    const tail = all.subarray(Math.max(0, all.length - room));
    // Start after the first event boundary so the tail begins with a whole event.
    const b = eventBoundary(tail, 0);
    return Buffer.concat([this.head, b ? tail.subarray(b.end) : tail]);
  }
}

/** The first blank line (event boundary) at or after from: its start and end offsets. */
function eventBoundary(buf: Buffer, from: number): { start: number; end: number } | undefined {
  const lf = buf.indexOf("\n\n", from);
  const crlf = buf.indexOf("\r\n\r\n", from);
  if (lf < 0 && crlf < 0) return undefined;
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return { start: crlf, end: crlf + 4 };
  return { start: lf, end: lf + 2 };
}

/** The id of a provider response object (OpenAI, Anthropic, Gemini, Responses API, Dify). */
export function responseIdOf(obj: unknown): string {
  if (typeof obj !== "object" || obj === null) return "";
  const o = obj as Record<string, unknown>;
  for (const key of ["id", "responseId", "message_id"]) {
    if (typeof o[key] === "string" && o[key]) return o[key] as string;
  }
  for (const key of ["message", "response"]) {
    const inner = o[key];
    if (typeof inner === "object" && inner !== null) {
      const id = (inner as Record<string, unknown>).id;
      if (typeof id === "string" && id) return id;
    }
  }
  return "";
}

function modelOf(obj: unknown): string {
  if (typeof obj !== "object" || obj === null) return "";
  const o = obj as Record<string, unknown>;
  for (const v of [o.model, o.modelVersion, (o.message as Record<string, unknown> | undefined)?.model,
    (o.response as Record<string, unknown> | undefined)?.model]) {
    if (typeof v === "string" && v) return v;
  }
  return "";
}

/** What a relay knows at the end of an LLM call. */
export interface RawUsageInput {
  /** The account to debit. */
  accountId: string;
  /**
   * The idempotency key. Default: the provider's response id (e.g.
   * "chatcmpl-..."), else a random UUID. Prefer the relay's own request id
   * when upstreams may repeat ids.
   */
  requestId?: string;
  /** The model called; default: the one the response names. */
  model?: string;
  provider?: string;
  /**
   * The provider's response: the whole body (bytes, string or parsed JSON)
   * of a non-streamed call, or an SseTail (or the raw tail bytes) of a
   * streamed one. The service extracts the usage from it.
   */
  response: Uint8Array | string | SseTail | object;
  /** Its format; default "auto" (the service detects it). */
  format?: ApiFormat | ApiFormatName;
  /** The usage, when the relay has already parsed it; then response is only used for the id. */
  usage?: Partial<TokenUsage>;
  streamed?: boolean;
  apiKeyId?: string;
  service?: string;
  labels?: Record<string, string>;
  batch?: boolean;
  /** When the call happened; default: now (so a later replay prices it at the same time). */
  eventTime?: Date;
  /**
   * For an estimate when the response carries no usage (a stream without a
   * usage chunk, cut short ...): the raw request body the relay forwarded
   * (bytes, string or parsed JSON). Dropped when larger than MAX_RAW_BYTES.
   */
  requestBody?: Uint8Array | string | object;
  /** Its format; default "auto". */
  requestFormat?: ApiFormat | ApiFormatName;
  /** For an estimate, instead of requestBody: the prompt text. */
  promptText?: string;
  /**
   * For an estimate: the text the relay forwarded, e.g. the concatenated
   * deltas of the stream (cut to MAX_TEXT_CHARS). With requestBody or
   * promptText, a call without usage is recorded as ESTIMATED, not MISSING.
   */
  completionText?: string;
}

/**
 * Builds a RecordUsage request from a raw provider response: response_json
 * and response_format are set and the server extracts the normalized usage.
 * event_time is fixed now, so retries and spool replays send the same payload.
 */
export function recordUsageFromResponse(input: RawUsageInput): RecordUsageRequest {
  let bytes: Buffer;
  let id = "";
  let model = "";
  let streamed = input.streamed;
  if (input.response instanceof SseTail) {
    bytes = input.response.bytes();
    id = input.response.id;
    model = input.response.model;
    streamed ??= true;
  } else if (typeof input.response === "string" || input.response instanceof Uint8Array) {
    bytes = typeof input.response === "string" ? Buffer.from(input.response, "utf8") : Buffer.from(input.response);
    const parsed = parseIdAndModel(bytes);
    id = parsed.id;
    model = parsed.model;
  } else {
    bytes = Buffer.from(JSON.stringify(input.response), "utf8");
    id = responseIdOf(input.response);
    model = modelOf(input.response);
  }
  if (bytes.length > MAX_RAW_BYTES) {
    // Keep the tail: for SSE it holds the usage; a JSON body this big is cut
    // and the server will report the usage as missing.
    bytes = bytes.subarray(bytes.length - MAX_RAW_BYTES);
  }
  return RecordUsageRequest.fromPartial({
    accountId: input.accountId,
    requestId: input.requestId || id || randomUUID(),
    model: input.model || model,
    provider: input.provider ?? "",
    usage: input.usage,
    apiKeyId: input.apiKeyId ?? "",
    service: input.service ?? "",
    eventTime: input.eventTime ?? new Date(),
    streamed: streamed ?? false,
    labels: input.labels ?? {},
    batch: input.batch ?? false,
    responseJson: input.usage ? Buffer.alloc(0) : bytes,
    responseFormat: toApiFormat(input.format),
    // The estimate inputs only matter without usage: not sent with it.
    ...(input.usage ? {} : estimateInputs(input)),
  });
}

function estimateInputs(input: RawUsageInput): Partial<RecordUsageRequest> {
  const out: Partial<RecordUsageRequest> = {};
  if (input.requestBody !== undefined) {
    const body = rawBytes(input.requestBody);
    if (body.length <= MAX_RAW_BYTES) {
      out.requestJson = body;
      out.requestFormat = toApiFormat(input.requestFormat);
    }
  }
  if (input.promptText) out.promptText = input.promptText.slice(0, MAX_TEXT_CHARS);
  if (input.completionText) out.completionText = input.completionText.slice(0, MAX_TEXT_CHARS);
  return out;
}

function rawBytes(body: Uint8Array | string | object): Buffer {
  if (typeof body === "string") return Buffer.from(body, "utf8");
  if (body instanceof Uint8Array) return Buffer.from(body);
  return Buffer.from(JSON.stringify(body), "utf8");
}

function parseIdAndModel(bytes: Buffer): { id: string; model: string } {
  const text = bytes.subarray(0, 256 * 1024).toString("utf8");
  const trimmed = text.trimStart();
  if (trimmed.startsWith("{")) {
    try {
      const obj = JSON.parse(bytes.toString("utf8")) as unknown;
      return { id: responseIdOf(obj), model: modelOf(obj) };
    } catch {
      // fall through
    }
  }
  const t = new SseTail();
  t.push(text);
  return { id: t.id, model: t.model };
}

/** Builds an EstimateTokens request from the raw provider request body the relay received. */
export function estimateFromRequest(input: {
  body: Uint8Array | string | object;
  model?: string;
  provider?: string;
  accountId?: string;
  format?: ApiFormat | ApiFormatName;
  maxOutputTokens?: number;
}): EstimateTokensRequest {
  const bytes = rawBytes(input.body);
  let model = input.model ?? "";
  if (!model) {
    try {
      model = modelOf(JSON.parse(bytes.toString("utf8")));
    } catch {
      // leave empty: the server says what is missing
    }
  }
  return EstimateTokensRequest.fromPartial({
    model,
    provider: input.provider ?? "",
    accountId: input.accountId ?? "",
    requestJson: bytes,
    requestFormat: toApiFormat(input.format),
    maxOutputTokens: input.maxOutputTokens !== undefined ? String(input.maxOutputTokens) : "0",
  });
}
