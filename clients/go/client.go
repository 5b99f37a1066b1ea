package metering

import (
	"context"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	meteringv1 "github.com/metering-dev/metering/clients/go/gen/metering/v1"
)

// Defaults of Options.
const (
	DefaultCallTimeout    = 10 * time.Second
	DefaultAttemptTimeout = 3 * time.Second
	DefaultMaxAttempts    = 5
	DefaultInitialBackoff = 50 * time.Millisecond
	DefaultMaxBackoff     = 2 * time.Second
)

// Options configure a Client. The zero value is usable: every zero field
// takes its default.
type Options struct {
	// CallTimeout bounds a whole call, retries included, when the caller's
	// context has no deadline of its own. Default 10s.
	CallTimeout time.Duration
	// AttemptTimeout bounds one attempt; an attempt that runs out of it
	// fails with DEADLINE_EXCEEDED and is retried while the call's own
	// deadline allows. Default 3s. Negative: attempts are bounded only by
	// the call's deadline, as they always are for UsageSummary, ListPrices
	// and ImportPrices (which may take long) and for the calls that are
	// not retried.
	AttemptTimeout time.Duration
	// MaxAttempts is the most attempts of one call, the first included.
	// Default 5; 1 disables retries.
	MaxAttempts int
	// InitialBackoff is the wait before the first retry; each further wait
	// doubles, up to MaxBackoff, and is jittered (a uniformly random value
	// between half of it and all of it). Defaults 50ms and 2s.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// OnRetry, if set, is called before each retry (e.g. to log it).
	OnRetry func(RetryInfo)
	// TransportCredentials for New; default insecure (plaintext), for a
	// service on localhost or inside a trusted network.
	TransportCredentials credentials.TransportCredentials
	// DialOptions are added to New's own (credentials, reconnect backoff).
	DialOptions []grpc.DialOption
}

// RetryInfo describes a failed attempt that is about to be retried.
type RetryInfo struct {
	// Method is the full gRPC method name, e.g.
	// "/metering.v1.MeteringService/RecordUsage".
	Method string
	// Attempt is the number of the attempt that failed (1 for the first).
	Attempt int
	// Err is the attempt's error.
	Err *Error
	// Delay is the wait before the next attempt.
	Delay time.Duration
}

func (o Options) withDefaults() Options {
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.AttemptTimeout == 0 {
		o.AttemptTimeout = DefaultAttemptTimeout
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = DefaultInitialBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.InitialBackoff {
		o.MaxBackoff = o.InitialBackoff
	}
	return o
}

// Client calls the metering service. It is safe for concurrent use.
//
// Every call takes a context: when the context has no deadline the call gets
// Options.CallTimeout. Calls that are safe to repeat are retried on
// UNAVAILABLE and DEADLINE_EXCEEDED (and on CANCELLED that did not come from
// the caller's own context, which a server shutting down returns) with
// exponential backoff and jitter. The request message is sent again
// unchanged, so a retried RecordUsage or GrantCredits carries the same
// request_id (a CorrectUsage the same correction_id, given or derived by the
// service from the payload) and the service records it exactly once. CreateAccount, AddPrice
// and RetirePrice are not retried: repeating them is not a no-op.
//
// Errors are *Error values (see FromError).
type Client struct {
	conn  *grpc.ClientConn // nil when the caller owns the connection
	svc   meteringv1.MeteringServiceClient
	admin meteringv1.MeteringAdminServiceClient
	opts  Options
}

// New connects to the service at target (e.g. "127.0.0.1:50051"). The
// connection is made lazily, on the first call, and re-made after failures
// with a short reconnect backoff (at most 2s), so a restarted service is
// picked up quickly. Close releases it.
func New(target string, opts Options) (*Client, error) {
	opts = opts.withDefaults()
	creds := opts.TransportCredentials
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   2 * time.Second,
			},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	dial = append(dial, opts.DialOptions...)
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, err
	}
	c := NewFromConn(conn, opts)
	c.conn = conn
	return c, nil
}

// NewFromConn makes a Client over a connection the caller owns (Close then
// leaves it open).
func NewFromConn(conn grpc.ClientConnInterface, opts Options) *Client {
	return &Client{
		svc:   meteringv1.NewMeteringServiceClient(conn),
		admin: meteringv1.NewMeteringAdminServiceClient(conn),
		opts:  opts.withDefaults(),
	}
}

// Close closes the connection made by New.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// Service returns the generated MeteringService stub, for calls without
// this client's deadlines, retries and error conversion.
func (c *Client) Service() meteringv1.MeteringServiceClient { return c.svc }

// Admin returns the generated MeteringAdminService stub.
func (c *Client) Admin() meteringv1.MeteringAdminServiceClient { return c.admin }

const (
	svcPrefix   = "/metering.v1.MeteringService/"
	adminPrefix = "/metering.v1.MeteringAdminService/"
)

// policy says how a method is called.
type policy int

const (
	// retried: safe to repeat; each attempt has AttemptTimeout.
	retried policy = iota
	// retriedLong: safe to repeat, but may take long (large summaries and
	// imports): an attempt is bounded only by the call's deadline.
	retriedLong
	// once: not safe to repeat; the one attempt has the call's deadline.
	once
)

// RecordUsage records the usage of one LLM call. request_id must be set; a
// retry (here, or by the caller after an error that is Temporary) must send
// the same request, whose replay the service answers with replayed = true.
func (c *Client) RecordUsage(ctx context.Context, req *meteringv1.RecordUsageRequest) (*meteringv1.RecordUsageResponse, error) {
	return invoke(ctx, c, svcPrefix+"RecordUsage", retried, req, c.svc.RecordUsage)
}

// RecordUsageBatch records up to 1000 records in one call; each record gets
// its own result (FromRecordError converts a record's error).
func (c *Client) RecordUsageBatch(ctx context.Context, req *meteringv1.RecordUsageBatchRequest) (*meteringv1.RecordUsageBatchResponse, error) {
	return invoke(ctx, c, svcPrefix+"RecordUsageBatch", retried, req, c.svc.RecordUsageBatch)
}

// CorrectUsage supersedes a recorded call's usage (or cost) with a later,
// authoritative figure: the call is named by account_id and the request_id
// it was recorded under; usage (or response_json), an exact cost, reason and
// correction_id are optional as the proto says. The difference is debited
// (negative: credited back) and the call counts as USAGE_SOURCE_CORRECTED
// from then on. It is idempotent per correction_id, which the service derives
// from request_id and the payload when empty, so it is retried like
// RecordUsage: a repeat of the same figure answers replayed = true and
// changes nothing. Errors: NOT_FOUND (ReasonRecordNotFound,
// ReasonAccountNotFound), ALREADY_EXISTS (ReasonRequestIDConflict: the
// correction_id was used with another payload), INVALID_ARGUMENT,
// FAILED_PRECONDITION.
func (c *Client) CorrectUsage(ctx context.Context, req *meteringv1.CorrectUsageRequest) (*meteringv1.CorrectUsageResponse, error) {
	return invoke(ctx, c, svcPrefix+"CorrectUsage", retried, req, c.svc.CorrectUsage)
}

// EstimateTokens counts the tokens of a text or raw request and prices them.
func (c *Client) EstimateTokens(ctx context.Context, req *meteringv1.EstimateTokensRequest) (*meteringv1.EstimateTokensResponse, error) {
	return invoke(ctx, c, svcPrefix+"EstimateTokens", retried, req, c.svc.EstimateTokens)
}

// GetBalance returns an account's balances.
func (c *Client) GetBalance(ctx context.Context, req *meteringv1.GetBalanceRequest) (*meteringv1.GetBalanceResponse, error) {
	return invoke(ctx, c, svcPrefix+"GetBalance", retried, req, c.svc.GetBalance)
}

// UsageSummary aggregates usage records (one page).
func (c *Client) UsageSummary(ctx context.Context, req *meteringv1.UsageSummaryRequest) (*meteringv1.UsageSummaryResponse, error) {
	return invoke(ctx, c, svcPrefix+"UsageSummary", retriedLong, req, c.svc.UsageSummary)
}

// CreateAccount creates an account (not retried).
func (c *Client) CreateAccount(ctx context.Context, req *meteringv1.CreateAccountRequest) (*meteringv1.CreateAccountResponse, error) {
	return invoke(ctx, c, adminPrefix+"CreateAccount", once, req, c.admin.CreateAccount)
}

// GrantCredits credits an account; idempotent by request_id, so retried.
func (c *Client) GrantCredits(ctx context.Context, req *meteringv1.GrantCreditsRequest) (*meteringv1.GrantCreditsResponse, error) {
	return invoke(ctx, c, adminPrefix+"GrantCredits", retried, req, c.admin.GrantCredits)
}

// UpdateAccount changes an account's billing settings (setting the same
// values again is a no-op, so it is retried).
func (c *Client) UpdateAccount(ctx context.Context, req *meteringv1.UpdateAccountRequest) (*meteringv1.UpdateAccountResponse, error) {
	return invoke(ctx, c, adminPrefix+"UpdateAccount", retried, req, c.admin.UpdateAccount)
}

// SetApiKeyBillingMode overrides the billing mode of one API key.
func (c *Client) SetApiKeyBillingMode(ctx context.Context, req *meteringv1.SetApiKeyBillingModeRequest) (*meteringv1.SetApiKeyBillingModeResponse, error) {
	return invoke(ctx, c, adminPrefix+"SetApiKeyBillingMode", retried, req, c.admin.SetApiKeyBillingMode)
}

// ListPrices lists price entries (one page).
func (c *Client) ListPrices(ctx context.Context, req *meteringv1.ListPricesRequest) (*meteringv1.ListPricesResponse, error) {
	return invoke(ctx, c, adminPrefix+"ListPrices", retriedLong, req, c.admin.ListPrices)
}

// AddPrice adds a price version (not retried: a repeat adds another).
func (c *Client) AddPrice(ctx context.Context, req *meteringv1.AddPriceRequest) (*meteringv1.AddPriceResponse, error) {
	return invoke(ctx, c, adminPrefix+"AddPrice", once, req, c.admin.AddPrice)
}

// RetirePrice adds a tombstone version (not retried).
func (c *Client) RetirePrice(ctx context.Context, req *meteringv1.RetirePriceRequest) (*meteringv1.RetirePriceResponse, error) {
	return invoke(ctx, c, adminPrefix+"RetirePrice", once, req, c.admin.RetirePrice)
}

// ImportPrices imports a price file; entries identical to their newest
// version are not added again, so it is retried.
func (c *Client) ImportPrices(ctx context.Context, req *meteringv1.ImportPricesRequest) (*meteringv1.ImportPricesResponse, error) {
	return invoke(ctx, c, adminPrefix+"ImportPrices", retriedLong, req, c.admin.ImportPrices)
}

// invoke runs one call with the client's deadlines, retries and error
// conversion. The same req is sent on every attempt.
func invoke[Req, Resp any](
	ctx context.Context, c *Client, method string, pol policy, req Req,
	call func(context.Context, Req, ...grpc.CallOption) (Resp, error),
) (Resp, error) {
	var zero Resp
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.CallTimeout)
		defer cancel()
	}
	for attempt := 1; ; attempt++ {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if c.opts.AttemptTimeout > 0 && pol == retried {
			actx, cancel = context.WithTimeout(ctx, c.opts.AttemptTimeout)
		}
		resp, err := call(actx, req)
		cancel()
		if err == nil {
			return resp, nil
		}
		merr := FromError(err)
		if pol == once || attempt >= c.opts.MaxAttempts || !retryable(ctx, merr.Code) {
			return zero, merr
		}
		delay := c.backoff(attempt)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= delay {
			return zero, merr
		}
		if c.opts.OnRetry != nil {
			c.opts.OnRetry(RetryInfo{Method: method, Attempt: attempt, Err: merr, Delay: delay})
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return zero, merr
		case <-t.C:
		}
	}
}

// retryable: UNAVAILABLE, and DEADLINE_EXCEEDED or CANCELLED of one attempt
// while the call itself still has time and was not cancelled.
func retryable(ctx context.Context, code codes.Code) bool {
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return ctx.Err() == nil
	}
	return false
}

// backoff returns the jittered wait after the given failed attempt:
// uniformly in [d/2, d] with d = InitialBackoff·2^(attempt-1), capped.
func (c *Client) backoff(attempt int) time.Duration {
	return jittered(c.opts.InitialBackoff, c.opts.MaxBackoff, attempt)
}

func jittered(initial, maxDelay time.Duration, attempt int) time.Duration {
	d := initial
	for i := 1; i < attempt && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	half := d / 2
	return half + rand.N(d-half+1)
}
