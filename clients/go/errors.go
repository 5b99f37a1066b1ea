package metering

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	meteringv1 "github.com/metering-dev/metering/clients/go/gen/metering/v1"
)

// ErrorDomain is the ErrorInfo domain of the service's errors.
const ErrorDomain = "metering.dev"

// Stable ErrorInfo reasons the service returns (Error.Reason).
const (
	ReasonInvalidArgument      = "INVALID_ARGUMENT"
	ReasonAccountNotFound      = "ACCOUNT_NOT_FOUND"
	ReasonRecordNotFound       = "RECORD_NOT_FOUND"
	ReasonAccountAlreadyExists = "ACCOUNT_ALREADY_EXISTS"
	ReasonPriceNotFound        = "PRICE_NOT_FOUND"
	ReasonRequestIDConflict    = "REQUEST_ID_CONFLICT"
	ReasonBalanceOutOfRange    = "BALANCE_OUT_OF_RANGE"
	ReasonCurrencyMismatch     = "CURRENCY_MISMATCH"
	ReasonMixedCurrencies      = "MIXED_CURRENCIES"
	ReasonWriteConflict        = "WRITE_CONFLICT"
	ReasonPriceVersionChanged  = "PRICE_VERSION_CHANGED"
	ReasonInternal             = "INTERNAL"
)

// FieldViolation names one offending request field of an INVALID_ARGUMENT
// error (google.rpc.BadRequest.FieldViolation).
type FieldViolation struct {
	Field       string
	Description string
}

// Error is a failed call: the gRPC status code plus the details the service
// attaches (google.rpc.ErrorInfo and google.rpc.BadRequest).
//
// Every method of Client returns an *Error for a gRPC failure, including
// transport failures (UNAVAILABLE) and deadlines (DEADLINE_EXCEEDED), so
//
//	var merr *metering.Error
//	if errors.As(err, &merr) && merr.Reason == metering.ReasonPriceNotFound { ... }
//
// works for every call. errors.Is(err, context.DeadlineExceeded) and
// errors.Is(err, context.Canceled) hold for the matching codes.
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Message is the status message (developer-facing).
	Message string
	// Reason is the ErrorInfo reason, e.g. PRICE_NOT_FOUND; empty when the
	// status had no ErrorInfo (transport errors, deadlines).
	Reason string
	// Domain is the ErrorInfo domain ("metering.dev" for the service's own).
	Domain string
	// Metadata is the ErrorInfo metadata.
	Metadata map[string]string
	// FieldViolations are the BadRequest violations of an INVALID_ARGUMENT,
	// one per offending field, in the service's order.
	FieldViolations []FieldViolation

	status *status.Status
}

// Error implements error: "metering: INVALID_ARGUMENT (INVALID_ARGUMENT): msg".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("metering: ")
	b.WriteString(CodeName(e.Code))
	if e.Reason != "" {
		b.WriteString(" (")
		b.WriteString(e.Reason)
		b.WriteString(")")
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// GRPCStatus returns the status the error was made from, so that
// status.FromError and status.Code keep working on it.
func (e *Error) GRPCStatus() *status.Status {
	if e.status != nil {
		return e.status
	}
	return status.New(e.Code, e.Message)
}

// Is reports context.DeadlineExceeded and context.Canceled for the matching
// codes.
func (e *Error) Is(target error) bool {
	switch target {
	case context.DeadlineExceeded:
		return e.Code == codes.DeadlineExceeded
	case context.Canceled:
		return e.Code == codes.Canceled
	}
	return false
}

// Fields returns the offending field names, in order.
func (e *Error) Fields() []string {
	fields := make([]string, 0, len(e.FieldViolations))
	for _, v := range e.FieldViolations {
		fields = append(fields, v.Field)
	}
	return fields
}

// Temporary reports whether the same call may succeed later unchanged: the
// service was unreachable, overloaded or too slow. A RecordUsage that failed
// temporarily must be retried with the same request_id.
func (e *Error) Temporary() bool { return temporaryCode(e.Code) }

func temporaryCode(c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.Canceled,
		codes.Internal, codes.Unknown:
		return true
	}
	return false
}

// FromError converts an error returned by a gRPC call into an *Error. It
// returns nil for nil, the *Error itself if err already is (or wraps) one,
// and for errors that carry no gRPC status (e.g. a bare context error) an
// *Error with the matching code (Canceled, DeadlineExceeded, else Unknown).
func FromError(err error) *Error {
	if err == nil {
		return nil
	}
	var merr *Error
	if errors.As(err, &merr) {
		return merr
	}
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	return fromStatus(st)
}

func fromStatus(st *status.Status) *Error {
	e := &Error{Code: st.Code(), Message: st.Message(), status: st}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			e.Reason = d.GetReason()
			e.Domain = d.GetDomain()
			e.Metadata = d.GetMetadata()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.FieldViolations = append(e.FieldViolations,
					FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		}
	}
	return e
}

// FromRecordError converts the error of one record of a RecordUsageBatch
// into the *Error RecordUsage would have returned for it (field
// descriptions are not part of a batch result). It returns nil for nil.
func FromRecordError(re *meteringv1.RecordError) *Error {
	if re == nil {
		return nil
	}
	e := &Error{
		Code:    codes.Code(re.GetCode()),
		Message: re.GetMessage(),
		Reason:  re.GetReason(),
		Domain:  ErrorDomain,
	}
	for _, f := range re.GetFields() {
		e.FieldViolations = append(e.FieldViolations, FieldViolation{Field: f})
	}
	return e
}

// ReasonOf returns the ErrorInfo reason of err, or "" when it has none.
func ReasonOf(err error) string {
	if e := FromError(err); e != nil {
		return e.Reason
	}
	return ""
}

// CodeOf returns the gRPC code of err: OK for nil.
func CodeOf(err error) codes.Code {
	if e := FromError(err); e != nil {
		return e.Code
	}
	return codes.OK
}

// codeNames are the canonical google.rpc.Code names.
var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// CodeName returns the canonical upper-snake name of a code, as in
// google.rpc.Code ("INVALID_ARGUMENT", "CANCELLED").
func CodeName(c codes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("CODE(%d)", uint32(c))
}

// ParseCode parses a canonical code name (as CodeName returns; "CANCELED"
// too) or a number.
func ParseCode(s string) (codes.Code, bool) {
	if strings.EqualFold(s, "CANCELED") {
		return codes.Canceled, true
	}
	for i, n := range codeNames {
		if strings.EqualFold(n, s) {
			return codes.Code(i), true
		}
	}
	var n uint32
	if _, err := fmt.Sscan(s, &n); err == nil && fmt.Sprint(n) == s {
		return codes.Code(n), true
	}
	return 0, false
}
