// The live inspector: one event stream brings a snapshot, then each request as it is answered;
// switches POST JSON to the stand-in. Every value an application sent is shown as text, never
// as markup.
"use strict";

const kept = { records: 5000, requests: 2000 };
const byId = (id) => document.getElementById(id);

function clock(seconds) {
  const at = new Date(seconds * 1000);
  const pad = (n, w) => String(n).padStart(w, "0");
  return `${pad(at.getHours(), 2)}:${pad(at.getMinutes(), 2)}:${pad(at.getSeconds(), 2)}.${pad(at.getMilliseconds(), 3)}`;
}

function shown(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

// -- records ----------------------------------------------------------------------------------

function recordRow(record) {
  const tr = document.createElement("tr");
  tr.dataset.dataId = shown(record.data_id);
  tr.dataset.type = shown(record.type);
  tr.append(
    cell(clock(record.time), "mono nowrap"),
    cell(shown(record.data_id), "mono"),
    cell(shown(record.type)),
    cell(shown(record.value), "value"),
    cell(shown(record.user)),
    cell(shown(record.created_at), "mono small"),
  );
  tr.hidden = !matches(tr);
  return tr;
}

function matches(tr) {
  const dataId = byId("filter-data-id").value.trim();
  const type = byId("filter-type").value.trim();
  return (!dataId || tr.dataset.dataId.includes(dataId)) && (!type || tr.dataset.type === type);
}

function refilter() {
  for (const tr of byId("records").tBodies[0].rows) tr.hidden = !matches(tr);
  countRecords();
}

function countRecords() {
  const rows = byId("records").tBodies[0].rows;
  let visible = 0;
  for (const tr of rows) if (!tr.hidden) visible += 1;
  const total = totals.records;
  let text = `${total} accepted`;
  if (rows.length < total) text += `, last ${rows.length} kept`;
  if (visible < rows.length) text += `, ${visible} shown by the filters`;
  byId("records-count").textContent = text;
}

// -- requests ---------------------------------------------------------------------------------

function rejection(request) {
  const refused = request.rejection;
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  const named = refused.items.length;
  summary.textContent = named
    ? `${named} of ${request.items} item${request.items === 1 ? "" : "s"} refused`
    : shown(refused.body.join("; ")) || "refused";
  details.append(summary);
  const list = document.createElement("ul");
  for (const entry of refused.items) {
    const li = document.createElement("li");
    li.className = "named";
    const head = document.createElement("div");
    head.textContent = `Item ${entry.index}: ` + entry.errors
      .map((error) => `${error.field || "(the item itself)"}: ${error.message}`).join("; ");
    const item = document.createElement("pre");
    item.className = "item";
    item.textContent = JSON.stringify(entry.item);
    li.append(head, item);
    list.append(li);
  }
  for (const message of refused.body) {
    const li = document.createElement("li");
    li.textContent = message;
    list.append(li);
  }
  const raw = document.createElement("details");
  const rawSummary = document.createElement("summary");
  rawSummary.textContent = "The 422's detail, as sent";
  const rawText = document.createElement("pre");
  rawText.className = "detail";
  const entries = Array.isArray(refused.detail) ? refused.detail : [refused.detail];
  rawText.textContent = entries.map((entry) => JSON.stringify(entry)).join("\n");
  raw.append(rawSummary, rawText);
  details.append(list, raw);
  return details;
}

function requestRow(request) {
  const tr = document.createElement("tr");
  tr.dataset.status = String(request.status);
  const status = cell(request.status ? String(request.status) : "dropped", `status s${request.status}`);
  const detail = document.createElement("td");
  if (request.rejection) detail.append(rejection(request));
  else if (request.reason) detail.textContent = request.reason;
  tr.append(
    cell(clock(request.time), "mono nowrap"),
    status,
    cell(String(request.items)),
    cell(`${Math.round(request.latency * 1000)} ms`, "mono nowrap"),
    detail,
  );
  return tr;
}

function countRequests() {
  const rows = byId("requests").tBodies[0].rows.length;
  let text = `${totals.requests} received`;
  if (rows < totals.requests) text += `, last ${rows} kept`;
  byId("requests-count").textContent = text;
}

// -- faults -----------------------------------------------------------------------------------

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function showFaults(faults) {
  const inForce = [];
  const state = (id, text, on) => {
    const p = byId(id);
    p.textContent = text;
    p.classList.toggle("on", on);
  };
  state("latency-state", faults.latency ? `in force: ${faults.latency} s per answer` : "off", faults.latency > 0);
  if (faults.latency) inForce.push(`latency ${faults.latency} s`);
  const statuses = faults.fail_statuses.join(", ");
  state("burst-state", faults.fail_next ? `${plural(faults.fail_next, "request")} left to answer ${statuses}` : "off", faults.fail_next > 0);
  if (faults.fail_next) inForce.push(`next ${faults.fail_next} answered ${statuses}`);
  const limit = faults.rate_limit;
  state("rate-state", limit ? `in force: ${limit.requests_per_second} requests/s, burst ${limit.burst}` : "off", Boolean(limit));
  if (limit) inForce.push(`rate limit ${limit.requests_per_second}/s`);
  const refuse = byId("refuse-key");
  refuse.setAttribute("aria-pressed", String(faults.refuse_key));
  refuse.textContent = `401 on every request: ${faults.refuse_key ? "on" : "off"}`;
  state("refuse-state", faults.refuse_key ? "Every request is answered 401 Invalid API key." : "Requests with the right key are accepted.", faults.refuse_key);
  if (faults.refuse_key) inForce.push("401 on every request");
  const also = [];
  if (faults.reset_next) also.push(`next ${faults.reset_next} reset`);
  if (faults.hang_next) also.push(`next ${faults.hang_next} held unanswered`);
  if (faults.rejected_data_ids.length) also.push(`datapoints refused: ${faults.rejected_data_ids.join(", ")}`);
  byId("also").hidden = !also.length;
  byId("also").textContent = `Also in force (set from Python): ${also.join("; ")}`;
  byId("faults-summary").textContent = inForce.concat(also).length ? `in force: ${inForce.concat(also).join("; ")}` : "none in force";
}

async function switchFaults(change) {
  const error = byId("switch-error");
  try {
    const answer = await fetch("/_inspector/api/faults", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(change),
    });
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.detail || answer.statusText);
    error.hidden = true;
    showFaults(body.faults);
  } catch (failure) {
    error.textContent = `Not switched: ${failure.message}`;
    error.hidden = false;
  }
}

function numberOf(id) {
  const value = byId(id).valueAsNumber;
  return Number.isFinite(value) ? value : null;
}

// -- the stream -------------------------------------------------------------------------------

let totals = { records: 0, requests: 0 };

function take(data) {
  if (data.kept) Object.assign(kept, data.kept);
  if (data.totals) totals = data.totals;
  byId("kept").textContent = `This page keeps the last ${kept.records} records and ${kept.requests} requests; the download has every accepted item.`;
}

function trim(tbody, limit) {
  while (tbody.rows.length > limit) tbody.deleteRow(-1);
}

function snapshot(data) {
  take(data);
  const records = byId("records").tBodies[0];
  const requests = byId("requests").tBodies[0];
  records.replaceChildren(...data.records.slice().reverse().map(recordRow));
  requests.replaceChildren(...data.requests.slice().reverse().map(requestRow));
  showFaults(data.faults);
  countRecords();
  countRequests();
}

function arrived(data) {
  take(data);
  const records = byId("records").tBodies[0];
  const requests = byId("requests").tBodies[0];
  const row = requestRow(data.request);
  row.classList.add("new");
  requests.prepend(row);
  for (const record of data.records) {
    const tr = recordRow(record);
    tr.classList.add("new");
    records.prepend(tr);
  }
  trim(records, kept.records);
  trim(requests, kept.requests);
  showFaults(data.faults);
  countRecords();
  countRequests();
}

function connect() {
  const connection = byId("connection");
  const events = new EventSource("/_inspector/api/events");
  events.addEventListener("snapshot", (event) => snapshot(JSON.parse(event.data)));
  events.addEventListener("request", (event) => arrived(JSON.parse(event.data)));
  events.addEventListener("faults", (event) => showFaults(JSON.parse(event.data).faults));
  events.addEventListener("open", () => {
    connection.textContent = "Live";
    connection.className = "connection live";
  });
  events.addEventListener("error", () => {
    connection.textContent = "Disconnected, retrying…";
    connection.className = "connection down";
  });
}

function wire() {
  const onSubmit = (id, change) => byId(id).addEventListener("submit", (event) => {
    event.preventDefault();
    switchFaults(change());
  });
  onSubmit("latency-form", () => ({ latency: numberOf("latency") ?? 0 }));
  onSubmit("burst-form", () => ({ fail_next: numberOf("burst") ?? 0 }));
  onSubmit("rate-form", () => ({ rate_limit: numberOf("rate") }));
  byId("latency-off").addEventListener("click", () => switchFaults({ latency: 0 }));
  byId("burst-off").addEventListener("click", () => switchFaults({ fail_next: 0 }));
  byId("rate-off").addEventListener("click", () => switchFaults({ rate_limit: null }));
  byId("refuse-key").addEventListener("click", (event) => {
    switchFaults({ refuse_key: event.currentTarget.getAttribute("aria-pressed") !== "true" });
  });
  byId("filter-data-id").addEventListener("input", refilter);
  byId("filter-type").addEventListener("input", refilter);
  connect();
}

wire();
