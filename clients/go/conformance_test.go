package metering_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	metering "github.com/metering-dev/metering/clients/go"
	meteringv1 "github.com/metering-dev/metering/clients/go/gen/metering/v1"
	"github.com/metering-dev/metering/clients/go/internal/testserver"
)

// The conformance runner: clients/conformance/scenario.json (see its
// README.md), every step sent once through Client against the real server.

type scenario struct {
	Format int            `json:"format"`
	Steps  []scenarioStep `json:"steps"`
}

type scenarioStep struct {
	ID          string          `json:"id"`
	Description string          `json:"description"`
	RPC         string          `json:"rpc"`
	Request     json.RawMessage `json:"request"`
	Expect      json.RawMessage `json:"expect"`
	Requires    string          `json:"requires"`
}

type expectation struct {
	Response any      `json:"response"`
	Unset    []string `json:"unset"`
	Error    *struct {
		Code   string    `json:"code"`
		Reason string    `json:"reason"`
		Fields *[]string `json:"fields"`
	} `json:"error"`
}

// rpcs maps a scenario rpc to the Client method that sends it.
func rpcs(c *metering.Client) map[string]func(context.Context, proto.Message) (proto.Message, error) {
	wrap := func(f any) func(context.Context, proto.Message) (proto.Message, error) {
		fv := reflect.ValueOf(f)
		return func(ctx context.Context, req proto.Message) (proto.Message, error) {
			out := fv.Call([]reflect.Value{reflect.ValueOf(ctx), reflect.ValueOf(req)})
			err, _ := out[1].Interface().(error)
			resp, _ := out[0].Interface().(proto.Message)
			return resp, err
		}
	}
	return map[string]func(context.Context, proto.Message) (proto.Message, error){
		"MeteringAdminService/CreateAccount":        wrap(c.CreateAccount),
		"MeteringAdminService/GrantCredits":         wrap(c.GrantCredits),
		"MeteringAdminService/UpdateAccount":        wrap(c.UpdateAccount),
		"MeteringAdminService/SetApiKeyBillingMode": wrap(c.SetApiKeyBillingMode),
		"MeteringAdminService/ListPrices":           wrap(c.ListPrices),
		"MeteringAdminService/AddPrice":             wrap(c.AddPrice),
		"MeteringAdminService/RetirePrice":          wrap(c.RetirePrice),
		"MeteringAdminService/ImportPrices":         wrap(c.ImportPrices),
		"MeteringService/RecordUsage":               wrap(c.RecordUsage),
		"MeteringService/RecordUsageBatch":          wrap(c.RecordUsageBatch),
		"MeteringService/EstimateTokens":            wrap(c.EstimateTokens),
		"MeteringService/GetBalance":                wrap(c.GetBalance),
		"MeteringService/UsageSummary":              wrap(c.UsageSummary),
		"MeteringService/CorrectUsage":              wrap(c.CorrectUsage),
	}
}

func loadScenario(t *testing.T) scenario {
	t.Helper()
	path := filepath.Join(testserver.RepoRoot(), "clients", "conformance", "scenario.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("conformance scenario: %v", err)
	}
	var sc scenario
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&sc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if sc.Format != 1 {
		t.Fatalf("%s: format %d, this runner reads format 1", path, sc.Format)
	}
	if len(sc.Steps) == 0 {
		t.Fatalf("%s: no steps", path)
	}
	return sc
}

func TestConformance(t *testing.T) {
	sc := loadScenario(t)
	srv := testserver.Start(t)
	// Each step is sent exactly once: no retries.
	c := newClient(t, srv.Addr, metering.Options{MaxAttempts: 1, AttemptTimeout: -1, CallTimeout: 30 * time.Second})
	calls := rpcs(c)

	now := time.Now().UTC().Truncate(time.Second)
	const layout = "2006-01-02T15:04:05Z"
	replacer := strings.NewReplacer(
		"${account}", uniqueID("conf-"),
		"${now}", now.Format(layout),
		"${start}", now.Add(-time.Hour).Format(layout),
		"${end}", now.Add(time.Hour).Format(layout),
	)

	passed, failed, pending := 0, 0, 0
	for _, step := range sc.Steps {
		ok := t.Run(step.ID, func(t *testing.T) {
			err := runStep(t, calls, replacer, step)
			switch {
			case err == nil:
				t.Logf("PASS %s", step.ID)
			case step.Requires != "":
				pending++
				t.Skipf("PENDING %s (requires %s): %v", step.ID, step.Requires, err)
			default:
				t.Errorf("FAIL %s: %s\n%v", step.ID, step.Description, err)
			}
		})
		if ok {
			passed++
		} else {
			failed++
		}
	}
	passed -= pending
	t.Logf("conformance: %d steps, %d passed, %d failed, %d pending", len(sc.Steps), passed, failed, pending)
}

// runStep sends one step and compares the outcome; nil means it passed.
func runStep(t *testing.T, calls map[string]func(context.Context, proto.Message) (proto.Message, error),
	replacer *strings.Replacer, step scenarioStep) error {
	call, ok := calls[step.RPC]
	if !ok {
		return fmt.Errorf("unknown rpc %q", step.RPC)
	}
	reqName := protoreflect.FullName("metering.v1." + step.RPC[strings.LastIndex(step.RPC, "/")+1:] + "Request")
	mt, err := protoregistry.GlobalTypes.FindMessageByName(reqName)
	if err != nil {
		return fmt.Errorf("request type %s: %v", reqName, err)
	}
	reqJSON, err := substitute(step.Request, replacer)
	if err != nil {
		return fmt.Errorf("request: %v", err)
	}
	req := mt.New().Interface()
	if err := protojson.Unmarshal(reqJSON, req); err != nil {
		return fmt.Errorf("request does not parse as %s: %v", reqName, err)
	}
	expJSON, err := substitute(step.Expect, replacer)
	if err != nil {
		return fmt.Errorf("expect: %v", err)
	}
	var exp expectation
	if err := decodeNumbers(expJSON, &exp); err != nil {
		return fmt.Errorf("expect: %v", err)
	}
	if (exp.Response == nil) == (exp.Error == nil) {
		return fmt.Errorf("expect needs exactly one of response and error")
	}

	resp, callErr := call(ctxT(t, 30*time.Second), req)

	if exp.Error != nil {
		if callErr == nil {
			got, _ := protojson.Marshal(resp)
			return fmt.Errorf("expected error %s/%s, got response %s", exp.Error.Code, exp.Error.Reason, got)
		}
		merr := metering.FromError(callErr)
		var problems []string
		if got := metering.CodeName(merr.Code); got != exp.Error.Code {
			problems = append(problems, fmt.Sprintf("code %s, expected %s", got, exp.Error.Code))
		}
		if merr.Reason != exp.Error.Reason {
			problems = append(problems, fmt.Sprintf("reason %q, expected %q", merr.Reason, exp.Error.Reason))
		}
		if merr.Domain != metering.ErrorDomain {
			problems = append(problems, fmt.Sprintf("domain %q, expected %q", merr.Domain, metering.ErrorDomain))
		}
		if exp.Error.Fields != nil && !slices.Equal(merr.Fields(), *exp.Error.Fields) {
			problems = append(problems, fmt.Sprintf("fields %q, expected %q", merr.Fields(), *exp.Error.Fields))
		}
		if problems != nil {
			return fmt.Errorf("%s\nactual: code=%s reason=%q fields=%q message=%q",
				strings.Join(problems, "; "), metering.CodeName(merr.Code), merr.Reason, merr.Fields(), merr.Message)
		}
		return nil
	}

	if callErr != nil {
		merr := metering.FromError(callErr)
		return fmt.Errorf("expected a response, got error code=%s reason=%q fields=%q message=%q",
			metering.CodeName(merr.Code), merr.Reason, merr.Fields(), merr.Message)
	}
	gotJSON, err := protojson.Marshal(resp)
	if err != nil {
		return err
	}
	var got any
	if err := decodeNumbers(gotJSON, &got); err != nil {
		return err
	}
	var problems []string
	if err := subset(exp.Response, got, "response"); err != nil {
		problems = append(problems, err.Error())
	}
	gotObj, _ := got.(map[string]any)
	for _, k := range exp.Unset {
		if v, ok := gotObj[k]; ok {
			problems = append(problems, fmt.Sprintf("%s should be unset, is %v", k, v))
		}
	}
	if problems != nil {
		want, _ := json.Marshal(exp.Response)
		return fmt.Errorf("%s\nexpected subset: %s\nactual:          %s", strings.Join(problems, "; "), want, compact(gotJSON))
	}
	return nil
}

// substitute replaces the placeholders in every string of a JSON value.
func substitute(raw json.RawMessage, r *strings.Replacer) ([]byte, error) {
	var v any
	if err := decodeNumbers(raw, &v); err != nil {
		return nil, err
	}
	var walk func(any) any
	walk = func(v any) any {
		switch v := v.(type) {
		case string:
			return r.Replace(v)
		case map[string]any:
			for k, e := range v {
				v[k] = walk(e)
			}
		case []any:
			for i, e := range v {
				v[i] = walk(e)
			}
		}
		return v
	}
	return json.Marshal(walk(v))
}

// decodeNumbers decodes JSON keeping numbers as json.Number, so that 435000
// and "435000" stay different and big values stay exact.
func decodeNumbers(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}

// subset reports where want is not a subset of got: objects by key,
// arrays element by element with equal length, scalars by equality.
func subset(want, got any, path string) error {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: expected an object, got %v", path, got)
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			gv, ok := g[k]
			if !ok {
				return fmt.Errorf("%s.%s: missing (expected %v)", path, k, w[k])
			}
			if err := subset(w[k], gv, path+"."+k); err != nil {
				return err
			}
		}
		return nil
	case []any:
		g, ok := got.([]any)
		if !ok {
			return fmt.Errorf("%s: expected an array, got %v", path, got)
		}
		if len(g) != len(w) {
			return fmt.Errorf("%s: %d elements, expected %d", path, len(g), len(w))
		}
		for i := range w {
			if err := subset(w[i], g[i], fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	default:
		if reflect.TypeOf(want) != reflect.TypeOf(got) || want != got {
			return fmt.Errorf("%s: %#v, expected %#v", path, got, want)
		}
		return nil
	}
}

func compact(b []byte) string {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return string(b)
	}
	return buf.String()
}

// TestConformanceMatcher checks the runner's own comparison rules.
func TestConformanceMatcher(t *testing.T) {
	parse := func(s string) any {
		var v any
		if err := decodeNumbers([]byte(s), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		want, got string
		ok        bool
	}{
		{`{"a":"9"}`, `{"a":"9","b":1}`, true},
		{`{"a":"9"}`, `{"a":9}`, false},
		{`{"a":9}`, `{"a":9}`, true},
		{`{"a":{"b":true}}`, `{"a":{"b":true,"c":"x"}}`, true},
		{`{"a":{"b":true}}`, `{"a":{}}`, false},
		{`{"r":[{"x":1}]}`, `{"r":[{"x":1,"y":2}]}`, true},
		{`{"r":[{"x":1}]}`, `{"r":[{"x":1},{"x":1}]}`, false},
		{`{"r":[]}`, `{"r":[]}`, true},
	}
	for _, c := range cases {
		err := subset(parse(c.want), parse(c.got), "response")
		if (err == nil) != c.ok {
			t.Errorf("subset(%s, %s) = %v, want ok=%v", c.want, c.got, err, c.ok)
		}
	}
	_ = meteringv1.File_metering_v1_metering_service_proto // the request types are registered
}
