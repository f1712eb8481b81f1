// The Strongroom dashboard: one page, views chosen by the URL's fragment (#plans, #checkpoints, ...).
// Every name shown comes from users, so the DOM is built with text nodes only (never innerHTML), and the page's
// Content-Security-Policy allows no inline script besides.
"use strict";

const STORE = window.sessionStorage;
const KEY_PROJECT = "strongroom.project";
const KEY_TOKEN = "strongroom.token";
// The embedded service (noauth) accepts any token; this word is sent when none is given.
const NOAUTH_TOKEN = "noauth";
const API_ROOT = new URL("../v1/", window.location.href);
const LIVE_MS = 1000;   // how often a view with running work asks again
const IDLE_MS = 5000;   // and one without

const session = {
  get project() { return STORE.getItem(KEY_PROJECT); },
  get token() { return STORE.getItem(KEY_TOKEN); },
  save(project, token) { STORE.setItem(KEY_PROJECT, project); STORE.setItem(KEY_TOKEN, token); },
  clear() { STORE.removeItem(KEY_PROJECT); STORE.removeItem(KEY_TOKEN); },
};

// -- small helpers ------------------------------------------------------------------------------------------

/** An element: h("td", {class: "x", onclick: fn, "data-id": id}, "text", child, ...); strings become text. */
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "value") el.value = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = Number(n), i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : `${iso}Z`);  // the API's times are UTC
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC").replace(/Z$/, " UTC");
}

function badge(status) {
  const s = String(status ?? "unknown");
  return h("span", {class: `badge badge-${s.replace(/[^a-z_-]/gi, "")}`, "data-status": s}, s);
}

function short(id) { return id ? String(id).slice(0, 8) : "–"; }

function table(headers, rows, empty, testid) {
  if (!rows.length) return h("p", {class: "empty", "data-testid": testid}, empty);
  return h("div", {class: "table-wrap"}, h("table", {"data-testid": testid},
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", {scope: "col"}, t)))),
    h("tbody", {}, rows)));
}

/** A row whose cells carry their column's name, shown as labels on a phone's narrow screen. */
function row(headers, cells, props) {
  return h("tr", props || {}, cells.map((c, i) => h("td", {"data-label": headers[i]}, c)));
}

function flash(message, kind) {
  const el = document.getElementById("flash");
  el.textContent = message;
  el.className = `flash flash-${kind || "info"}`;
  el.hidden = !message;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/** Calls /v1/{project}{path} with the session's token; the answer's JSON, or an ApiError with its message. */
async function api(method, path, body) {
  const url = new URL(`${encodeURIComponent(session.project)}${path}`, API_ROOT);
  const headers = {"X-Auth-Token": session.token, "Accept": "application/json"};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(url, {method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                 credentials: "omit", cache: "no-store"});
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!resp.ok) throw refused(resp, data, `${method} ${path}`);
  return data;
}

/** The ApiError of a refused answer (its JSON's message, else the status); a 401 sends the page to sign in. */
function refused(resp, data, what) {
  let message = `${what}: HTTP ${resp.status}`;
  if (data && typeof data === "object") {
    const inner = Object.values(data)[0];
    if (inner && typeof inner === "object" && inner.message) message = String(inner.message);
  }
  if (resp.status === 401) { session.clear(); showLogin("The token was refused: sign in again."); }
  return new ApiError(resp.status, message);
}

/** Downloads /v1/{project}{path} as a file named ``name``: fetched with the token in its header (never in a URL),
 *  then handed to the browser as a blob of this origin. */
async function download(path, name) {
  const url = new URL(`${encodeURIComponent(session.project)}${path}`, API_ROOT);
  const resp = await fetch(url, {headers: {"X-Auth-Token": session.token}, credentials: "omit", cache: "no-store"});
  if (!resp.ok) {
    let data = null;
    try { data = await resp.json(); } catch (_) { data = null; }
    throw refused(resp, data, `GET ${path}`);
  }
  const href = URL.createObjectURL(await resp.blob());
  const link = h("a", {href, download: name, hidden: true});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60_000);
}

const get = (path) => api("GET", path);

async function providers() { return (await get("/providers")).providers; }

async function plansById() {
  const plans = (await get("/plans")).plans;
  return new Map(plans.map((p) => [p.id, p]));
}

/** Every checkpoint of the project, newest first, across providers. */
async function allCheckpoints(provs) {
  const lists = await Promise.all(provs.map((p) => get(`/providers/${encodeURIComponent(p.id)}/checkpoints`)
    .then((r) => r.checkpoints.map((c) => ({...c, provider_id: c.protection_plan?.provider_id || p.id})))));
  return lists.flat().sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
}

function pct(done, total) {
  if (!total) return done ? 100 : 0;
  return Math.min(100, Math.floor((100 * done) / total));
}

function progressCell(done, total) {
  const p = pct(done, total);
  return h("div", {class: "progress", "data-testid": "progress"},
    h("progress", {max: 100, value: p}),
    h("span", {class: "progress-text"}, `${p}% · ${fmtBytes(done)} of ${fmtBytes(total)}`));
}

// -- views --------------------------------------------------------------------------------------------------

const VIEWS = {};
let current = {name: null, timer: null, generation: 0};

function schedule(fn, ms) {
  const generation = current.generation;
  clearTimeout(current.timer);
  current.timer = setTimeout(async () => {
    if (generation !== current.generation) return;
    try { await fn(); } catch (err) { flash(err.message, "error"); }
  }, ms);
}

/** A part of a view that asks the API again and again: ``load`` answers [node, busy]. */
function live(container, load) {
  const generation = current.generation;
  const refresh = async () => {
    if (generation !== current.generation) return;
    const [node, busy] = await load();
    if (generation !== current.generation) return;
    container.replaceChildren(node);
    schedule(refresh, busy ? LIVE_MS : IDLE_MS);
  };
  return refresh();
}

VIEWS.overview = async (view) => {
  const provs = await providers();
  const usage = (await get("/usage")).usage;
  const byProvider = new Map(usage.map((u) => [u.provider_id, u]));
  const cards = provs.map((p) => {
    const u = byProvider.get(p.id) || {};
    const counts = Object.entries(u.checkpoints || {}).map(([s, n]) => `${n} ${s}`).join(", ") || "none";
    return h("article", {class: "card provider", "data-testid": "provider", "data-id": p.id},
      h("h3", {}, p.name || p.id, " ", badge(p.status)),
      h("p", {class: "muted"}, p.description || ""),
      p.status_reason ? h("p", {class: "error"}, p.status_reason) : null,
      h("dl", {class: "facts"},
        h("dt", {}, "Provider id"), h("dd", {}, h("code", {}, p.id)),
        h("dt", {}, "Checkpoints"), h("dd", {}, counts),
        h("dt", {}, "Protected (logical)"), h("dd", {"data-testid": "logical"}, fmtBytes(u.logical_bytes)),
        h("dt", {}, "Stored in the bank"), h("dd", {"data-testid": "stored"}, fmtBytes(u.stored_bytes)),
        h("dt", {}, "Deduplication"), h("dd", {}, u.dedup_ratio ? `${Number(u.dedup_ratio).toFixed(2)}×` : "–"),
        h("dt", {}, "Compression"),
        h("dd", {}, u.compression_ratio ? `${Number(u.compression_ratio).toFixed(2)}×` : "–"),
        u.unreadable_checkpoints ? [h("dt", {}, "Unreadable checkpoints"),
          h("dd", {class: "error"}, String(u.unreadable_checkpoints))] : null));
  });
  let pools;
  try {
    const list = (await get("/pools")).pools;
    const headers = ["Pool", "Provider", "Backend", "Used", "Free", "Total", "Error"];
    pools = table(headers, list.map((p) => row(headers, [p.name, p.provider_name || short(p.provider_id),
      p.block_backend || p.driver || "–", fmtBytes(p.allocated_bytes), fmtBytes(p.free_bytes),
      fmtBytes(p.total_bytes), p.error || ""])), "No pools reported.", "pools");
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 403) throw err;
    pools = h("p", {class: "muted"}, "Pools are shown to administrators.");
  }
  view.replaceChildren(
    h("h2", {}, "Providers and banks"), h("div", {class: "cards"}, cards),
    h("h2", {}, "Storage pools"), pools);
};

VIEWS.plans = async (view) => {
  const [provs, plans, types] = await Promise.all([providers(), get("/plans").then((r) => r.plans),
    get("/protectables").then((r) => r.protectable_type)]);
  const instances = (await Promise.all(types.map((t) =>
    get(`/protectables/${encodeURIComponent(t)}/instances`).then((r) => r.instances.map((i) => ({...i, type: t})))
      .catch(() => [])))).flat();
  const provName = new Map(provs.map((p) => [p.id, p.name || p.id]));

  const headers = ["Plan", "Status", "Provider", "Resources", ""];
  const rows = plans.map((p) => row(headers, [
    h("span", {class: "name", "data-testid": "plan-name"}, p.name),
    badge(p.status), provName.get(p.provider_id) || short(p.provider_id),
    h("ul", {class: "plain"}, (p.resources || []).map((r) => h("li", {}, r.name || r.id, " ",
      h("span", {class: "muted"}, r.type)))),
    h("button", {type: "button", "data-testid": "protect", onclick: (e) => protect(p, e.currentTarget)},
      "Protect now"),
  ], {"data-id": p.id}));

  const name = h("input", {name: "name", required: true, maxlength: 255, id: "plan-name-input"});
  const provider = h("select", {name: "provider", id: "plan-provider"},
    provs.map((p) => h("option", {value: p.id}, p.name || p.id)));
  const boxes = instances.map((i) => h("label", {class: "check"},
    h("input", {type: "checkbox", name: "resource", value: i.id, "data-type": i.type, "data-name": i.name || i.id}),
    " ", i.name || i.id, " ", h("span", {class: "muted"}, i.type)));
  const form = h("form", {class: "card", id: "plan-form", onsubmit: async (e) => {
    e.preventDefault();
    const resources = [...form.querySelectorAll("input[name=resource]:checked")].map((b) =>
      ({type: b.dataset.type, id: b.value, name: b.dataset.name}));
    if (!resources.length) { flash("Choose at least one resource for the plan.", "error"); return; }
    const created = (await api("POST", "/plans", {plan: {name: name.value, provider_id: provider.value,
      resources, parameters: {}}})).plan;
    flash(`Plan “${created.name}” created.`, "ok");
    await VIEWS.plans(view);
  }},
    h("h3", {}, "New plan"),
    h("label", {}, "Name ", name),
    h("label", {}, "Provider ", provider),
    h("fieldset", {}, h("legend", {}, "Resources (protectable instances)"),
      boxes.length ? boxes : h("p", {class: "muted"}, "No protectable instance found.")),
    h("div", {class: "actions"}, h("button", {type: "submit", id: "plan-create"}, "Create plan")));
  view.replaceChildren(h("h2", {}, "Plans"), table(headers, rows, "No plan yet.", "plans"), form);
};

async function protect(plan, button) {
  if (button) button.disabled = true;
  try {
    const cp = (await api("POST", `/providers/${encodeURIComponent(plan.provider_id)}/checkpoints`,
      {checkpoint: {plan_id: plan.id}})).checkpoint;
    flash(`Protecting “${plan.name}”: checkpoint ${short(cp.id)}.`, "ok");
    window.location.hash = "#checkpoints";
  } finally {
    if (button) button.disabled = false;
  }
}

const BUSY_CHECKPOINT = new Set(["protecting", "deleting", "copying", "restoring"]);

VIEWS.checkpoints = async (view) => {
  const provs = await providers();
  const provName = new Map(provs.map((p) => [p.id, p.name || p.id]));
  const panel = h("div", {id: "action-panel"});
  const list = h("div", {});
  const headers = ["Plan", "Status", "Progress", "Created", "Provider", ""];
  view.replaceChildren(h("h2", {}, "Checkpoints"), panel, list);
  await live(list, async () => {
    const cps = await allCheckpoints(provs);
    const rows = cps.map((c) => {
      const plan = c.protection_plan || {};
      const available = c.status === "available";
      return row(headers, [
        h("span", {class: "name"}, plan.name || short(plan.id), h("br"), h("code", {class: "muted"}, short(c.id))),
        [badge(c.status), c.status_reason ? h("div", {class: "error small"}, c.status_reason) : null],
        progressCell(c.progress?.bytes_done || 0, c.progress?.bytes_total || 0),
        fmtTime(c.created_at), provName.get(c.provider_id) || short(c.provider_id),
        h("div", {class: "buttons"},
          h("button", {type: "button", "data-testid": "restore", disabled: !available,
                       onclick: () => restoreForm(panel, c)}, "Restore"),
          h("button", {type: "button", "data-testid": "files", disabled: !available,
                       onclick: () => { window.location.hash = filesHash({provider: c.provider_id,
                         checkpoint: c.id}); }}, "Files"),
          h("button", {type: "button", "data-testid": "verify", disabled: !available,
                       onclick: (e) => verify(c, e.currentTarget)}, "Verify")),
      ], {"data-id": c.id, "data-status": c.status, "data-testid": "checkpoint"});
    });
    return [table(headers, rows, "No checkpoint yet: protect a plan.", "checkpoints"),
            cps.some((c) => BUSY_CHECKPOINT.has(c.status))];
  });
};

function restoreForm(panel, cp) {
  const plan = cp.protection_plan || {};
  const resources = (plan.resources || []);
  const inputs = resources.map((r) => {
    const input = h("input", {name: "restore_name", "data-resource": `${r.type}#${r.id}`,
      value: `${r.name || r.id}.restored`, required: r.type === "OS::Cinder::Volume", maxlength: 255});
    return h("label", {}, `${r.name || r.id} → new volume named `, input);
  });
  const form = h("form", {class: "card", id: "restore-form", onsubmit: async (e) => {
    e.preventDefault();
    const parameters = {};
    for (const input of form.querySelectorAll("input[name=restore_name]")) {
      if (input.value) parameters[input.dataset.resource] = {restore_name: input.value};
    }
    const restore = (await api("POST", "/restores", {restore: {provider_id: cp.provider_id,
      checkpoint_id: cp.id, restore_target: null, parameters}})).restore;
    flash(`Restore ${short(restore.id)} of checkpoint ${short(cp.id)} started.`, "ok");
    window.location.hash = "#restores";
  }},
    h("h3", {}, "Restore checkpoint ", h("code", {}, short(cp.id)), " of “", plan.name || "", "”"),
    h("p", {class: "muted"}, "Each volume is restored whole, as a new volume of the name given. To restore "
      + "chosen files only, open the checkpoint's Files."),
    inputs,
    h("div", {class: "actions"},
      h("button", {type: "submit", id: "restore-submit"}, "Start restore"),
      h("button", {type: "button", class: "secondary", onclick: () => panel.replaceChildren()}, "Cancel")));
  panel.replaceChildren(form);
  form.querySelector("input")?.focus();
}

// -- the files of a checkpoint's volume ---------------------------------------------------------------------
// The view's place is in the fragment (#files?provider=&checkpoint=&resource=&partition=&path=), so that the
// breadcrumb, a partition's button and the browser's Back all move through it; the files ticked stay ticked
// while the user goes from directory to directory of the same filesystem.

const VOLUME_TYPE = "OS::Cinder::Volume";
// What is ticked (path -> its type) in the filesystem ``key`` names, and the new volume's name if typed.
const selection = {key: null, paths: new Map(), name: null};
const layoutCache = {checkpoint: null, cp: null, layouts: new Map()};  // of the checkpoint last browsed

function filesHash(place) {
  const params = new URLSearchParams();
  for (const name of ["provider", "checkpoint", "resource", "partition", "path"]) {
    if (place[name] !== undefined && place[name] !== null && place[name] !== "") params.set(name, place[name]);
  }
  return `#files?${params}`;
}

function filesPlace() {
  const hash = window.location.hash;
  const query = hash.includes("?") ? hash.slice(hash.indexOf("?") + 1) : "";
  return Object.fromEntries(new URLSearchParams(query));
}

const ARCHIVED_TYPES = new Set(["file", "directory", "symlink", "fifo"]);
const FILE_TYPE_CHAR = {directory: "d", symlink: "l", fifo: "p", socket: "s", "char-device": "c",
  "block-device": "b"};

/** ``-rw-r--r--`` from the API's type and octal mode (set-id and sticky bits as ``ls -l`` shows them). */
function fmtMode(type, mode) {
  const bits = parseInt(mode, 8);
  if (Number.isNaN(bits)) return String(mode ?? "–");
  const triplet = (shift, special, lower, upper) => {
    const r = bits & (4 << shift) ? "r" : "-", w = bits & (2 << shift) ? "w" : "-";
    const x = bits & (1 << shift);
    const last = bits & special ? (x ? lower : upper) : (x ? "x" : "-");
    return r + w + last;
  };
  return (FILE_TYPE_CHAR[type] || "-") + triplet(6, 0o4000, "s", "S") + triplet(3, 0o2000, "s", "S") +
    triplet(0, 0o1000, "t", "T");
}

function joinPath(dir, name) { return dir === "/" ? `/${name}` : `${dir}/${name}`; }

function breadcrumb(place, path) {
  // The path as it reads (/etc/ssh), each of its directories a link but the last.
  const parts = path.split("/").filter(Boolean);
  const crumbs = [parts.length ? h("a", {href: filesHash({...place, path: "/"}), "data-testid": "crumb"}, "/")
    : h("strong", {"data-testid": "crumb"}, "/")];
  parts.forEach((part, i) => {
    const to = `/${parts.slice(0, i + 1).join("/")}`;
    if (i) crumbs.push(h("span", {class: "muted"}, "/"));
    crumbs.push(i === parts.length - 1 ? h("strong", {"data-testid": "crumb"}, part)
      : h("a", {href: filesHash({...place, path: to}), "data-testid": "crumb"}, part));
  });
  return h("div", {class: "crumbs", role: "navigation", "aria-label": "Directory", "data-testid": "breadcrumb"},
    crumbs);
}

function partitionChooser(place, layout, chosen) {
  if (!layout || layout.table === "none" || !(layout.partitions || []).length) return null;
  return h("div", {class: "partitions", "data-testid": "partitions"},
    h("span", {class: "muted"}, `${layout.table.toUpperCase()} partitions: `),
    layout.partitions.map((p) => h("a", {href: filesHash({...place, partition: p.number, path: "/"}),
      class: `partition${p.number === chosen ? " active" : ""}`, "data-testid": "partition",
      "data-number": p.number, "aria-current": p.number === chosen ? "true" : null},
    `${p.number}`, p.name ? ` ${p.name}` : "", ` · ${fmtBytes(p.size)} · `,
    p.filesystem || h("span", {class: "muted"}, "no filesystem"))));
}

VIEWS.files = async (view) => {
  const place = filesPlace();
  if (!place.provider || !place.checkpoint) { window.location.hash = "#checkpoints"; return; }
  const cpPath = `/providers/${encodeURIComponent(place.provider)}/checkpoints/`
    + encodeURIComponent(place.checkpoint);
  // An available checkpoint does not change: it and its volume's layout are asked once, not at every directory.
  if (layoutCache.checkpoint !== place.checkpoint) {
    Object.assign(layoutCache, {checkpoint: place.checkpoint, cp: (await get(cpPath)).checkpoint,
      layouts: new Map()});
  }
  const cp = layoutCache.cp;
  const plan = cp.protection_plan || {};
  const volumes = (plan.resources || []).filter((r) => r.type === VOLUME_TYPE);
  const title = h("h2", {}, "Files of checkpoint ", h("code", {}, short(cp.id)), " of “", plan.name || "", "”");
  const back = h("p", {}, h("a", {href: "#checkpoints"}, "← Checkpoints"));
  if (!volumes.length) {
    view.replaceChildren(title, back, h("p", {class: "empty"}, "This checkpoint holds no volume."));
    return;
  }
  const resource = volumes.find((r) => `${r.type}#${r.id}` === place.resource) || volumes[0];
  const key = `${resource.type}#${resource.id}`;
  const here = {provider: place.provider, checkpoint: place.checkpoint, resource: key};
  const partition = place.partition ? Number(place.partition) : null;
  const path = place.path && place.path.startsWith("/") ? place.path.replace(/(.)\/+$/, "$1") : "/";
  const base = `${cpPath}/resources/${encodeURIComponent(key)}`;
  const query = (more) => {
    const q = new URLSearchParams(more);
    if (partition !== null) q.set("partition", String(partition));
    return q.toString();
  };

  const volumeChooser = volumes.length > 1 ? h("div", {class: "partitions", "data-testid": "volumes"},
    h("span", {class: "muted"}, "Volumes: "),
    volumes.map((r) => h("a", {href: filesHash({...here, resource: `${r.type}#${r.id}`, path: "/"}),
      class: `partition${r === resource ? " active" : ""}`}, r.name || r.id))) : null;

  let layout = null, listing = null, problem = null;
  try {
    layout = layoutCache.layouts.get(key) || (await get(`${base}/volume`)).volume;
    layoutCache.layouts.set(key, layout);
    listing = (await get(`${base}/files?${query({path})}`)).directory;
  } catch (err) {
    if (!(err instanceof ApiError) || err.status === 401) throw err;
    problem = err.message;  // a 400 names what was found on the partition, a 404 the missing path
  }
  const chosen = listing?.filesystem?.partition ?? partition;
  const fsKey = `${place.checkpoint} ${key} ${chosen ?? ""}`;
  if (selection.key !== fsKey) Object.assign(selection, {key: fsKey, paths: new Map(), name: null});
  const withPartition = {...here, partition: chosen ?? undefined};

  const restorePanel = h("div", {id: "files-restore"});
  const drawRestore = () => restorePanel.replaceChildren(filesRestoreForm(cp, resource, chosen, restorePanel));
  const head = [title, back, volumeChooser, partitionChooser(here, layout, chosen),
    breadcrumb(withPartition, path)].filter(Boolean);
  if (problem) {
    view.replaceChildren(...head, h("p", {class: "error", role: "alert", "data-testid": "files-error"}, problem),
      restorePanel);
    drawRestore();
    return;
  }

  const order = (f) => (f.type === "directory" ? 0 : 1);
  const files = [...listing.files].sort((a, b) => order(a) - order(b) || a.name.localeCompare(b.name));
  const headers = ["Name", "Type", "Size", "Mode", "Owner", "Modified", ""];
  const rows = files.map((f) => {
    const full = f.path || joinPath(path, f.name);
    // Device nodes and sockets are listed but not archived (doc/file-restore.md): nothing to tick.
    const box = ARCHIVED_TYPES.has(f.type) ? h("input", {type: "checkbox", name: "file", value: full,
      "data-testid": "select", "aria-label": `Select ${f.name}`, checked: selection.paths.has(full),
      onchange: (e) => {
        if (e.currentTarget.checked) selection.paths.set(full, f.type);
        else selection.paths.delete(full);
        drawRestore();
      }}) : h("input", {type: "checkbox", disabled: true, title: "not restored: a device node or socket",
      "aria-label": `${f.name} cannot be restored`});
    const name = f.type === "directory"
      ? h("a", {href: filesHash({...withPartition, path: full}), class: "name", "data-testid": "open"}, f.name, "/")
      : h("span", {class: "name"}, f.name);
    const target = f.type === "symlink" && f.target ? h("span", {class: "muted"}, " → ", f.target) : null;
    const action = f.type === "file" ? h("button", {type: "button", class: "secondary", "data-testid": "download",
      onclick: async (e) => {
        const button = e.currentTarget;
        button.disabled = true;
        try { await download(`${base}/files/content?${query({path: full})}`, f.name); }
        catch (err) { flash(err.message, "error"); }
        finally { button.disabled = false; }
      }}, "Download") : "";
    return row(headers, [h("span", {class: "file-name"}, box, name, target), f.type, fmtBytes(f.size),
      h("code", {title: f.mode}, fmtMode(f.type, f.mode)), `${f.uid}:${f.gid}`, fmtTime(f.mtime), action],
    {"data-path": full, "data-type": f.type, "data-testid": "file"});
  });
  const fsInfo = listing.filesystem || {};
  view.replaceChildren(...head,
    h("p", {class: "muted small", "data-testid": "filesystem"}, `${resource.name || resource.id}: `,
      `${fsInfo.filesystem || "filesystem"}`, fsInfo.partition ? ` on partition ${fsInfo.partition}` : "",
      ` at offset ${fmtBytes(fsInfo.offset ?? 0)}`),
    table(headers, rows, "This directory is empty.", "files"), restorePanel);
  drawRestore();
};

/** The ticked files and directories, and the restore of them into a new volume (a tar stream of the paths). */
function filesRestoreForm(cp, resource, partition, panel) {
  const picked = [...selection.paths.keys()].sort();
  const defaultName = `${resource.name || resource.id}-files-${short(cp.id)}.tar`;
  const name = h("input", {name: "restore_name", id: "files-restore-name", value: selection.name || defaultName,
    required: true, maxlength: 255, oninput: (e) => { selection.name = e.currentTarget.value; }});
  const clear = () => {
    selection.paths.clear();
    for (const box of document.querySelectorAll("input[name=file]")) box.checked = false;
    panel.replaceChildren(filesRestoreForm(cp, resource, partition, panel));
  };
  const form = h("form", {class: "card", id: "files-restore-form", onsubmit: async (e) => {
    e.preventDefault();
    if (!picked.length) { flash("Tick at least one file or directory to restore.", "error"); return; }
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const options = {paths: picked, restore_name: name.value};
      if (partition !== null && partition !== undefined) options.partition = partition;
      const restore = (await api("POST", "/restores", {restore: {provider_id: cp.protection_plan?.provider_id ||
        filesPlace().provider, checkpoint_id: cp.id, restore_target: null,
      parameters: {[`${resource.type}#${resource.id}`]: options}}})).restore;
      Object.assign(selection, {paths: new Map(), name: null});
      flash(`Restore ${short(restore.id)} of ${picked.length} path(s) from checkpoint ${short(cp.id)} started.`, "ok");
      window.location.hash = "#restores";
    } catch (err) {
      flash(err.message, "error");
      submit.disabled = false;
    }
  }},
    h("h3", {}, "Restore selected"),
    picked.length
      ? h("ul", {class: "plain picked", "data-testid": "picked"}, picked.map((p) => h("li", {}, h("code", {}, p),
        selection.paths.get(p) === "directory" ? h("span", {class: "muted"}, " (and everything under it)") : null)))
      : h("p", {class: "muted", "data-testid": "picked"}, "Tick files or directories to restore them."),
    h("p", {class: "muted small"}, "They are written as a tar stream into a new volume of the name given; the "
      + "checkpoint's volume itself is not restored."),
    h("label", {}, "New volume named ", name),
    h("div", {class: "actions"},
      h("button", {type: "submit", id: "files-restore-submit", disabled: !picked.length}, "Restore selected"),
      h("button", {type: "button", class: "secondary", disabled: !picked.length, onclick: clear}, "Clear")));
  return form;
}

async function verify(cp, button) {
  if (button) button.disabled = true;
  const v = (await api("POST", "/verifications", {verification: {provider_id: cp.provider_id,
    checkpoint_id: cp.id, parameters: {}}})).verification;
  flash(`Verification ${short(v.id)} of checkpoint ${short(cp.id)} started.`, "ok");
  window.location.hash = "#restores";
}

const BUSY_RUN = new Set(["in_progress", "verifying", "restoring"]);

function runProgress(run) {
  const p = run.extra_info?.progress;
  if (!p || typeof p !== "object") return "–";
  const total = p.bytes_total ?? p.total_bytes ?? p.total;
  const done = p.bytes_done ?? p.done_bytes ?? p.done;
  if (total === undefined || done === undefined) return "–";
  return progressCell(done, total);
}

function resourcesStatus(run) {
  const entries = Object.entries(run.resources_status || {});
  if (!entries.length) return "–";
  return h("ul", {class: "plain"}, entries.map(([k, s]) => h("li", {}, k.split("#").pop(), ": ", s)));
}

VIEWS.restores = async (view) => {
  const restoresEl = h("div", {});
  const verificationsEl = h("div", {});
  view.replaceChildren(h("h2", {}, "Restores"), restoresEl, h("h2", {}, "Verifications"), verificationsEl);
  const rHeaders = ["Restore", "Status", "Progress", "Checkpoint", "Resources", "Reason"];
  const vHeaders = ["Verification", "Status", "Checkpoint", "Resources", "Reason"];
  await live(h("div"), async () => {
    const [restores, verifications] = await Promise.all([get("/restores").then((r) => r.restores),
      get("/verifications").then((r) => r.verifications)]);
    restoresEl.replaceChildren(table(rHeaders, restores.map((r) => row(rHeaders, [
      h("code", {}, short(r.id)), badge(r.status), runProgress(r), h("code", {}, short(r.checkpoint_id)),
      resourcesStatus(r), reason(r)], {"data-id": r.id, "data-status": r.status, "data-testid": "restore-row"})),
    "No restore yet.", "restores"));
    verificationsEl.replaceChildren(table(vHeaders, verifications.map((v) => row(vHeaders, [
      h("code", {}, short(v.id)), badge(v.status), h("code", {}, short(v.checkpoint_id)), resourcesStatus(v),
      reason(v)], {"data-id": v.id, "data-status": v.status, "data-testid": "verification-row"})),
    "No verification yet.", "verifications"));
    const busy = [...restores, ...verifications].some((r) => BUSY_RUN.has(r.status));
    return [document.createTextNode(""), busy];
  });
};

function reason(run) {
  const reasons = Object.values(run.resources_reason || {}).filter(Boolean);
  return reasons.length ? h("span", {class: "error small"}, reasons.join("; ")) : "";
}

VIEWS.schedules = async (view) => {
  const [triggers, ops] = await Promise.all([get("/triggers").then((r) => r.triggers),
    get("/scheduled_operations").then((r) => r.operations)]);
  const logs = new Map(await Promise.all(ops.map((o) =>
    get(`/scheduled_operations/${encodeURIComponent(o.id)}/logs`)
      .then((r) => [o.id, r.scheduled_operation_logs]))));
  const triggerName = new Map(triggers.map((t) => [t.id, t.name]));
  // The logs are the fires that were claimed or dropped: the newest is the last run.  The engines' planned fires
  // are not in the API, so the next fire time is shown only when the API gives one (next_fire_time).
  const lastOf = (entries) => [...entries]
    .sort((a, b) => String(b.expect_start_time).localeCompare(String(a.expect_start_time)))[0];
  const whenNext = (value) => (value ? fmtTime(value) : h("span", {class: "muted"}, "–"));

  // The column only when the API says (a next_fire_time on the trigger or the operation).
  const withNext = [...triggers, ...ops].some((x) => x.next_fire_time);
  const tHeaders = ["Trigger", "Type", "Pattern", "Starts", "Window", ...(withNext ? ["Next fire"] : [])];
  const tRows = triggers.map((t) => {
    const props = t.properties || {};
    return row(tHeaders, [h("span", {class: "name"}, t.name), `${t.type} (${props.format || "crontab"})`,
      h("code", {}, props.pattern || "–"), fmtTime(props.start_time), props.window ? `${props.window} s` : "–",
      ...(withNext ? [whenNext(t.next_fire_time)] : [])], {"data-id": t.id});
  });
  const oHeaders = ["Operation", "Type", "Trigger", "Enabled", ...(withNext ? ["Next fire"] : []), "Last run"];
  const oRows = ops.map((o) => {
    const entries = logs.get(o.id) || [];
    const last = lastOf(entries);
    return row(oHeaders, [h("span", {class: "name"}, o.name), o.operation_type,
      triggerName.get(o.trigger_id) || short(o.trigger_id), o.enabled ? "yes" : "suspended",
      ...(withNext ? [whenNext(o.next_fire_time)] : []),
      last ? [badge(last.state), " ", fmtTime(last.end_time || last.actual_start_time),
        last.error_info ? h("div", {class: "error small"}, last.error_info) : null] : "never"], {"data-id": o.id});
  });
  view.replaceChildren(
    h("h2", {}, "Triggers"), table(tHeaders, tRows, "No trigger.", "triggers"),
    h("h2", {}, "Scheduled operations"), table(oHeaders, oRows, "No scheduled operation.", "operations"));
};

VIEWS.alerts = async (view) => {
  const alerts = (await get("/alerts")).alerts;
  const headers = ["Severity", "Resource", "Condition", "Message", "Raised", "State"];
  const rows = alerts.map((a) => row(headers, [badge(a.severity),
    [a.resource_type, " ", h("span", {class: "name"}, a.resource_name || short(a.resource_id))],
    a.condition, a.message, fmtTime(a.raised_at), a.active ? "active" : `cleared ${fmtTime(a.cleared_at)}`],
  {"data-id": a.id, "data-testid": "alert"}));
  view.replaceChildren(h("h2", {}, "Alerts"), table(headers, rows, "No alert: all is well.", "alerts"));
};

VIEWS.logs = async (view) => {
  const logs = (await get("/operation_logs")).operation_logs;
  logs.sort((a, b) => String(b.created_at || b.started_at).localeCompare(String(a.created_at || a.started_at)));
  const headers = ["Operation", "Status", "Checkpoint", "Plan", "Started", "Ended", "Error"];
  const rows = logs.map((l) => row(headers, [l.operation_type, badge(l.status), h("code", {}, short(l.checkpoint_id)),
    h("code", {}, short(l.plan_id)), fmtTime(l.started_at), fmtTime(l.ended_at),
    l.error_info ? h("span", {class: "error small"}, l.error_info) : ""], {"data-id": l.id, "data-testid": "log"}));
  view.replaceChildren(h("h2", {}, "Operation logs"), table(headers, rows, "No operation yet.", "logs"));
};

// -- the frame ----------------------------------------------------------------------------------------------

function showLogin(message) {
  // What was browsed belongs to the session signed out of.
  Object.assign(layoutCache, {checkpoint: null, cp: null, layouts: new Map()});
  Object.assign(selection, {key: null, paths: new Map(), name: null});
  current.generation += 1;
  clearTimeout(current.timer);
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  document.getElementById("view").replaceChildren();
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("login-project").focus();
}

async function route() {
  if (!session.project || !session.token) { showLogin(); return; }
  document.getElementById("login").hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("who").hidden = false;
  document.getElementById("who-project").textContent = `Project ${session.project}`;
  const name = (window.location.hash || "#overview").slice(1).split("?")[0];
  const render = VIEWS[name] || VIEWS.overview;
  const section = name === "files" ? "checkpoints" : name;  // a checkpoint's files are under its checkpoints
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.getAttribute("href") === `#${section}`);
    if (a.getAttribute("href") === `#${section}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  current.generation += 1;
  clearTimeout(current.timer);
  current.name = name;
  const view = document.getElementById("view");
  view.setAttribute("data-view", name);
  view.setAttribute("aria-busy", "true");
  try {
    await render(view);
  } catch (err) {
    view.replaceChildren(h("p", {class: "error", role: "alert"}, err.message));
  } finally {
    view.removeAttribute("aria-busy");
  }
}

async function signIn(event) {
  event.preventDefault();
  const project = document.getElementById("login-project").value.trim();
  const token = document.getElementById("login-token").value.trim() || NOAUTH_TOKEN;
  session.save(project, token);
  try {
    await get("/providers");  // the token and the project, tried once
  } catch (err) {
    session.clear();
    showLogin(err.message);
    return;
  }
  document.getElementById("login-token").value = "";
  flash("", "info");
  await route();
}

window.addEventListener("unhandledrejection", (e) => {
  flash(e.reason?.message || String(e.reason), "error");
});
window.addEventListener("hashchange", () => route());
// A module runs once the document is parsed: the elements are there.
document.getElementById("login-form").addEventListener("submit", signIn);
document.getElementById("sign-out").addEventListener("click", () => { session.clear(); showLogin(); });
for (const a of document.querySelectorAll("#nav a")) a.addEventListener("click", () => flash("", "info"));
route();
