// Package metering is the Go client of the metering service
// (proto package metering.v1): a gRPC service that prices and records the
// token usage of LLM calls for relays and gateways.
//
// Client calls every RPC with a context, default deadlines, retries on
// UNAVAILABLE and DEADLINE_EXCEEDED (exponential backoff with jitter, the
// same request and so the same request_id on every attempt) and typed
// errors (*Error: code, ErrorInfo reason, BadRequest field violations).
//
// Reporter records usage at stream end in the background, batched into
// RecordUsageBatch calls; while the service is unreachable it spools the
// records durably to a local append-only file and replays them later,
// also after a restart of the relay.
//
// Call, ResponseTail and FormatForPath build a RecordUsage request from the
// provider's raw response (response_json and response_format); the service
// extracts the usage.
//
// A relay, at stream end:
//
//	tail := metering.NewResponseTail(0)
//	io.Copy(io.MultiWriter(w, tail), upstream.Body)
//	call := metering.Call{AccountID: account, RequestID: metering.NewRequestID(), Model: model, Streamed: true}
//	reporter.Report(call.RecordFromResponse(tail.Bytes(), metering.FormatForPath(r.URL.Path)))
//
// The generated stubs are in the gen/metering/v1 package (meteringv1).
package metering
