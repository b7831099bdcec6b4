// A provisioning script's flow, typed by the portal's schema: tests/test_clients.py generates
// schema.d.ts from the live server with openapi-typescript, and `tsc --strict --noEmit` must find
// no error here. What a wrong schema would break: an error typed `never` (no body declared), a
// checklist typed `Checklist | string` (two bodies in one answer), a syntax typed `string`.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

type DeploymentDocument = components["schemas"]["DeploymentRequest"];
type ApiError = components["schemas"]["Error"];
type Outcome = components["schemas"]["OutcomeEnum"];

/** Every message of an error, with the field it is about: `appliances.0.c_address: ...`. */
export function messages(error: ApiError, prefix = ""): string[] {
  const found: string[] = error.detail === undefined ? [] : [`${prefix}${error.detail}`];
  for (const [field, value] of Object.entries(error)) {
    if (field === "detail" || value === undefined || typeof value === "string") continue;
    const name = `${prefix}${field}`;
    if (!Array.isArray(value)) {
      found.push(...messages(value, `${name}.`)); // a nested object's errors
      continue;
    }
    value.forEach((entry, index) => {
      if (typeof entry === "string") found.push(`${name}: ${entry}`);
      else found.push(...messages(entry, `${name}.${index}.`)); // a list's: one per item
    });
  }
  return found;
}

export async function provision(baseUrl: string, token: string, document: DeploymentDocument): Promise<Outcome> {
  const api = createClient<paths>({ baseUrl, headers: { Authorization: `Token ${token}` } });

  // Plan, then apply: the same write, the first with ?dry_run=true.
  const planned = await api.POST("/api/deployments/upsert/", { params: { query: { dry_run: true } }, body: document });
  if (planned.error) throw new Error(messages(planned.error).join("\n"));
  if ("plan" in planned.data) {
    const { added, removed, unchanged } = planned.data.plan;
    console.log(`${planned.data.outcome}: +${added.length} -${removed.length} =${unchanged}`);
    for (const rule of added) console.log(`#${rule.number} ${rule.source} -> ${rule.destination} ${rule.ports}/${rule.protocol}`);
  }
  const upserted = await api.POST("/api/deployments/upsert/", { body: document });
  if (upserted.error) {
    const invalid: ApiError = upserted.error;
    const names = invalid["name"];
    if (Array.isArray(names)) console.error(`name: ${names.join(" ")}`);
    throw new Error(messages(invalid).join("\n"));
  }
  if ("plan" in upserted.data) throw new Error("a write without dry_run answered a plan");
  const id: number = upserted.data.id;
  const outcome: Outcome = upserted.data.outcome;
  const header: string | null = upserted.response.headers.get("Outcome");
  console.log(`deployment ${id}: ${outcome} (Outcome: ${header})`);

  // The checklist: one JSON body; its CSV is an operation of its own.
  const checklist = await api.GET("/api/deployments/{id}/checklist/", {
    params: { path: { id }, query: { status: ["todo", "requested"], port: 25 } },
  });
  if (checklist.error) throw new Error(messages(checklist.error).join("\n"));
  const fingerprint: string = checklist.data.fingerprint;
  const first = checklist.data.items[0];
  const csv = await api.GET("/api/deployments/{id}/checklist.csv", { params: { path: { id } }, parseAs: "text" });
  const text: string | undefined = csv.data;
  console.log(`${checklist.data.items.length} rules, ${fingerprint}; CSV of ${text?.split("\n").length} lines`);
  if (first === undefined) return outcome;

  // A status change with If-Match: a stale ETag is a 412, with the item's version now.
  const item = await api.GET("/api/checklist-items/{id}/", { params: { path: { id: first.id } } });
  if (item.error) throw new Error(item.error.detail);
  let etag = item.response.headers.get("ETag") ?? "*";
  for (let attempt = 0; attempt < 2; attempt++) {
    const changed = await api.PATCH("/api/checklist-items/{id}/", {
      params: { path: { id: first.id }, header: { "If-Match": etag } },
      body: { status: "requested", comment: "CHG-42" },
    });
    if (changed.data) {
      const said: Outcome = changed.data.outcome;
      console.log(`item ${changed.data.id}: ${changed.data.status}, ${said}`);
      break;
    }
    if (changed.response.status === 412) {
      console.warn(`changed meanwhile: ${changed.error.detail}`);
      etag = changed.response.headers.get("ETag") ?? "*";
      continue;
    }
    const comment = changed.error["comment"]; // a 400: a waiver without its reason, say
    throw new Error(Array.isArray(comment) ? comment.join(" ") : messages(changed.error).join("\n"));
  }

  // Many rules at once, asked first with dry_run.
  const bulk = await api.POST("/api/deployments/{id}/checklist/status/", {
    params: { path: { id } },
    body: { status: "requested", comment: "CHG-42", filter: { port: 25 }, dry_run: true },
  });
  if (bulk.error) throw new Error(messages(bulk.error).join("\n"));
  console.log(`${bulk.data.changed} of ${bulk.data.matched} would change (${bulk.data.outcome})`);

  // The firewall's rules; the syntax is one the portal knows.
  const nft = await api.GET("/api/deployments/{id}/firewall/{syntax}/", {
    params: { path: { id, syntax: "nftables" }, query: { zones: "hq:inside" } },
    parseAs: "text",
  });
  if (nft.error) throw new Error(messages(nft.error).join("\n"));
  console.log(`${nft.data.length} bytes, ${nft.response.headers.get("Checklist-Fingerprint")}`);
  // @ts-expect-error: a misspelt syntax does not type-check (it would answer 404).
  await api.GET("/api/deployments/{id}/firewall/{syntax}/", { params: { path: { id, syntax: "nftabels" } } });
  return outcome;
}
