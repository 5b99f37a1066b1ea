// Runs clients/conformance/scenario.json through MeteringClient against a
// real server (see clients/conformance/README.md).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { MeteringClient, MeteringError, RPCS, type RpcDescriptor, type RpcName } from "../src";
import { MeteringServer, REPO, runPrefix } from "./helpers/server";

const SCENARIO = path.join(REPO, "clients", "conformance", "scenario.json");

interface Step {
  id: string;
  rpc: string;
  request: unknown;
  requires?: string;
  expect: {
    response?: unknown;
    unset?: string[];
    error?: { code: string; reason?: string; fields?: string[] };
  };
}

const scenario = JSON.parse(readFileSync(SCENARIO, "utf8")) as { format: number; steps: Step[] };

function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function substitute(v: unknown, vars: Record<string, string>): unknown {
  if (typeof v === "string") {
    return v.replace(/\$\{(\w+)\}/g, (m, k: string) => (k in vars ? vars[k]! : m));
  }
  if (Array.isArray(v)) return v.map((x) => substitute(x, vars));
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, substitute(x, vars)]));
  }
  return v;
}

const TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

/**
 * Subset match (README "expect"). Timestamps compare by instant: ts-proto's
 * toJSON renders whole seconds as "...:00.000Z" where protojson writes ":00Z".
 */
function mismatch(expected: unknown, actual: unknown, at: string): string | undefined {
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return `${at}: expected an array, got ${JSON.stringify(actual)}`;
    if (actual.length !== expected.length) return `${at}: expected ${expected.length} elements, got ${actual.length}`;
    for (let i = 0; i < expected.length; i++) {
      const m = mismatch(expected[i], actual[i], `${at}[${i}]`);
      if (m) return m;
    }
    return undefined;
  }
  if (expected && typeof expected === "object") {
    if (!actual || typeof actual !== "object" || Array.isArray(actual)) {
      return `${at}: expected an object, got ${JSON.stringify(actual)}`;
    }
    for (const [k, v] of Object.entries(expected)) {
      if (!(k in actual)) return `${at}.${k}: missing (expected ${JSON.stringify(v)})`;
      const m = mismatch(v, (actual as Record<string, unknown>)[k], `${at}.${k}`);
      if (m) return m;
    }
    return undefined;
  }
  if (typeof expected === "string" && typeof actual === "string" && TIMESTAMP.test(expected) && TIMESTAMP.test(actual)) {
    return Date.parse(expected) === Date.parse(actual) ? undefined : `${at}: expected ${expected}, got ${actual}`;
  }
  return expected === actual ? undefined : `${at}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`;
}

describe("conformance scenario", () => {
  let server: MeteringServer;
  let client: MeteringClient;
  const now = new Date(Math.floor(Date.now() / 1000) * 1000);
  const vars = {
    account: runPrefix("conf"),
    now: rfc3339(now),
    start: rfc3339(new Date(now.getTime() - 3600_000)),
    end: rfc3339(new Date(now.getTime() + 3600_000)),
  };

  before(async () => {
    server = await MeteringServer.start();
    client = new MeteringClient({ address: server.address });
  });
  after(async () => {
    client?.close();
    await server?.stop();
  });

  it("has steps in format 1", () => {
    assert.equal(scenario.format, 1);
    assert.ok(scenario.steps.length > 0);
  });

  for (const step of scenario.steps) {
    it(step.id, async (t) => {
      const desc = RPCS[step.rpc as RpcName] as RpcDescriptor<unknown, unknown> | undefined;
      assert.ok(desc, `unknown rpc ${step.rpc}`);
      const request = desc.request.fromJSON(substitute(step.request, vars));
      const expect = substitute(step.expect, vars) as Step["expect"];
      let outcome: string | undefined;
      try {
        // Each step exactly once: no retries.
        const res = await client.invoke(desc, request, { retry: { maxAttempts: 1 } });
        const json = desc.response.toJSON(res) as Record<string, unknown>;
        if (expect.error) {
          outcome = `expected ${JSON.stringify(expect.error)}, got response ${JSON.stringify(json)}`;
        } else {
          outcome = mismatch(expect.response ?? {}, json, "response");
          for (const f of expect.unset ?? []) {
            if (!outcome && f in json) outcome = `response.${f}: expected unset, got ${JSON.stringify(json[f])}`;
          }
          if (outcome) outcome += `\nactual: ${JSON.stringify(json)}`;
        }
      } catch (e) {
        if (!(e instanceof MeteringError)) throw e;
        const got = { code: e.codeName, reason: e.reason, fields: e.fields };
        if (!expect.error) {
          outcome = `expected a response, got error ${JSON.stringify(got)} (${e.message})`;
        } else if (
          got.code !== expect.error.code ||
          (expect.error.reason !== undefined && got.reason !== expect.error.reason) ||
          (expect.error.fields !== undefined && JSON.stringify(got.fields) !== JSON.stringify(expect.error.fields))
        ) {
          outcome = `expected error ${JSON.stringify(expect.error)}, got ${JSON.stringify(got)} (${e.message})`;
        } else if (e.domain !== "metering.dev") {
          outcome = `ErrorInfo domain: expected "metering.dev", got ${JSON.stringify(e.domain)}`;
        }
      }
      if (outcome && step.requires) {
        console.log(`PENDING ${step.id} (requires ${step.requires}): ${outcome}`);
        t.skip(`pending: requires ${step.requires}`);
        return;
      }
      console.log(`${outcome ? "FAIL" : "PASS"} ${step.id}`);
      if (outcome) assert.fail(`${step.id}: ${outcome}`);
    });
  }
});
