// The web console: sign in with a ClientID/ClientSecret, list, create and delete sessions, join one
// as publisher (microphone) or subscriber, hear each translation track, read the transcripts.
// Credentials and tokens live in this module's memory only (never storage, never a URL).
import { Room, RoomEvent, Track } from "livekit-client";

const API = "/session-storage";
const $ = (selector) => document.querySelector(selector);
let credentials = null; // {id, secret}
let joined = null; // {room, socket, meters, role, permissions, session}

function show(element, visible) {
  element.hidden = !visible;
}

function text(tag, content, className) {
  const node = document.createElement(tag);
  node.textContent = content;
  if (className) node.className = className;
  return node;
}

function report(message, isError = true) {
  const line = text("li", message, isError ? "error" : "info");
  $("#messages").prepend(line);
}

async function call(method, path, body) {
  const response = await fetch(API + path, {
    method,
    headers: { ClientID: credentials.id, ClientSecret: credentials.secret, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await response.json().catch(() => ({ ok: false, error: { desc: response.statusText } }));
  if (!answer.ok) {
    const error = answer.error || {};
    throw new Error(`${response.status} ${error.code || ""}: ${error.desc || error.message || "request failed"}`);
  }
  return answer.data;
}

// -- sign in -----------------------------------------------------------------------------------

$("#signin").addEventListener("submit", async (event) => {
  event.preventDefault();
  credentials = { id: $("#client-id").value.trim(), secret: $("#client-secret").value };
  $("#client-secret").value = "";
  try {
    await refreshSessions();
    await loadLanguages();
    show($("#signin"), false);
    show($("#workspace"), true);
    $("#who").textContent = credentials.id;
  } catch (error) {
    credentials = null;
    report(`sign-in failed: ${error.message}`);
  }
});

$("#signout").addEventListener("click", async () => {
  await leave();
  credentials = null;
  show($("#workspace"), false);
  show($("#signin"), true);
});

// -- sessions ----------------------------------------------------------------------------------

async function loadLanguages() {
  const matrix = await call("GET", "/languages");
  const sources = [...new Set(matrix.pairs.map((p) => p.source))].sort();
  const source = $("#source-language");
  source.replaceChildren(...sources.map((code) => new Option(code, code, code === "en", code === "en")));
  const fillTargets = () => {
    const targets = matrix.pairs.filter((p) => p.source === source.value).map((p) => p.target).sort();
    $("#target-languages").replaceChildren(...targets.map((code) => new Option(code, code, code === "es", code === "es")));
    $("#task-languages").replaceChildren(...targets.map((code) => new Option(code, code)));
  };
  source.addEventListener("change", fillTargets);
  fillTargets();
}

async function refreshSessions() {
  const sessions = await call("GET", "/sessions");
  const rows = sessions.map((s) => {
    const row = document.createElement("tr");
    row.dataset.session = s.session_id;
    row.append(text("td", s.session_id), text("td", s.phase), text("td", s.worker_ready ? "ready" : "starting"),
      text("td", `${s.source_language} → ${(s.target_languages || []).join(", ")}`), text("td", s.expires_at || ""));
    const actions = document.createElement("td");
    for (const role of ["publisher", "subscriber"]) {
      const button = text("button", `join as ${role}`);
      button.dataset.action = `join-${role}`;
      button.addEventListener("click", () => join(s, role).catch((error) => report(`join failed: ${error.message}`)));
      actions.append(button);
    }
    const remove = text("button", "delete", "danger");
    remove.dataset.action = "delete";
    remove.addEventListener("click", async () => {
      try {
        if (joined && joined.session.session_id === s.session_id) await leave();
        await call("DELETE", `/sessions/${s.session_id}`);
        await refreshSessions();
      } catch (error) {
        report(`delete failed: ${error.message}`);
      }
    });
    actions.append(remove);
    row.append(actions);
    return row;
  });
  $("#sessions tbody").replaceChildren(...rows);
  show($("#no-sessions"), rows.length === 0);
}

$("#refresh").addEventListener("click", () => refreshSessions().catch((error) => report(error.message)));

$("#create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const targets = [...$("#target-languages").selectedOptions].map((o) => o.value);
  try {
    const created = await call("POST", "/sessions", { data: {
      publisher_count: Number($("#publisher-count").value), subscriber_count: Number($("#subscriber-count").value),
      source_language: $("#source-language").value, target_languages: targets, ttl_seconds: Number($("#ttl").value),
    } });
    report(`session ${created.session_id} created`, false);
    await refreshSessions();
  } catch (error) {
    report(`create failed: ${error.message}`);
  }
});

// -- a joined session --------------------------------------------------------------------------

async function join(session, role) {
  await leave();
  const tokens = await call("GET", `/sessions/${session.session_id}/tokens`);
  const token = tokens[role][0];
  const room = new Room({ adaptiveStream: false, dynacast: false });
  joined = { room, socket: null, meters: [], role, permissions: [], session };
  $("#joined-title").textContent = `${session.session_id} as ${role}`;
  $("#transcripts").replaceChildren();
  $("#tracks").replaceChildren();
  show($("#session"), true);
  room.on(RoomEvent.TrackSubscribed, (track, publication) => {
    if (track.kind === Track.Kind.Audio && publication.trackName.startsWith("translation_")) {
      addTranslationTrack(track, publication.trackName);
    }
  });
  room.on(RoomEvent.Disconnected, () => $("#joined-state").textContent = "left the room");
  await room.connect(session.stream_url, token);
  $("#joined-state").textContent = "in the room";
  openControl(session, token);
  setControls();
}

function addTranslationTrack(track, name) {
  const box = document.createElement("div");
  box.className = "track";
  box.dataset.track = name;
  const element = track.attach();
  element.controls = true;
  const meter = document.createElement("meter");
  meter.min = 0;
  meter.max = 1;
  meter.value = 0;
  box.append(text("span", name), element, meter);
  $("#tracks").append(box);
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  context.createMediaStreamSource(new MediaStream([track.mediaStreamTrack])).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const tick = () => {
    if (!joined) return;
    analyser.getFloatTimeDomainData(samples);
    const level = Math.sqrt(samples.reduce((sum, v) => sum + v * v, 0) / samples.length);
    meter.value = Math.min(1, level * 4);
    box.dataset.peak = Math.max(Number(box.dataset.peak || 0), level).toFixed(4);
    requestAnimationFrame(tick);
  };
  context.resume().then(tick);
  joined.meters.push(context);
}

function openControl(session, token) {
  const url = new URL(session.control_url, location.href);
  const socket = new WebSocket(url.href);
  joined.socket = socket;
  socket.addEventListener("open", () => socket.send(JSON.stringify({ message_type: "authenticate", data: { token } })));
  socket.addEventListener("message", (event) => onControlMessage(JSON.parse(event.data)));
  socket.addEventListener("close", () => { $("#task-state").textContent = "control connection closed"; setControls(); });
}

const segments = new Map(); // transcription_id -> row

function segmentRow(id) {
  if (!segments.has(id)) {
    const row = document.createElement("tr");
    row.dataset.segment = id;
    row.append(text("td", "", "heard"), text("td", "", "translated"), text("td", "", "latency"));
    $("#transcripts").prepend(row);
    segments.set(id, row);
  }
  return segments.get(id);
}

function onControlMessage({ message_type: type, data }) {
  if (type === "authenticated") {
    joined.permissions = data.permissions;
    $("#permissions").textContent = data.permissions.join(", ");
    setControls();
  } else if (type === "current_task") {
    $("#task-state").textContent = `${data.state}: ${data.source_language} → ${data.target_languages.join(", ")}`;
    joined.taskState = data.state;
    setControls();
  } else if (type === "partial_transcription" || type === "validated_transcription") {
    const t = data.transcription;
    if (type === "validated_transcription") { // a final replaces the partials shown before it
      for (const [id, row] of segments) {
        if (id !== t.transcription_id && row.querySelector(".heard.partial")) { row.remove(); segments.delete(id); }
      }
    }
    const cell = segmentRow(t.transcription_id).querySelector(".heard");
    cell.textContent = t.text;
    cell.classList.toggle("partial", type === "partial_transcription");
  } else if (type === "translated_transcription") {
    const t = data.transcription;
    const cell = segmentRow(t.transcription_id).querySelector(".translated");
    const line = text("div", `${t.language}: ${t.text}`);
    line.dataset.language = t.language;
    cell.append(line);
  } else if (type === "pipeline_timings") {
    const timings = data.timings;
    const latency = Object.entries(timings).filter(([k]) => k.startsWith("end_of_speech_to_audio_ms."))
      .map(([k, v]) => `${k.split(".")[1]} ${Math.round(v)} ms`).join(", ");
    segmentRow(data.transcription_id).querySelector(".latency").textContent = latency;
  } else if (type === "error") {
    report(`server: ${data.code}: ${data.desc}`);
  }
}

function send(type, data = {}) {
  if (joined && joined.socket && joined.socket.readyState === WebSocket.OPEN) {
    joined.socket.send(JSON.stringify({ message_type: type, data }));
  }
}

function setControls() {
  const can = (permission) => Boolean(joined && joined.permissions.includes(permission));
  const open = Boolean(joined && joined.socket && joined.socket.readyState === WebSocket.OPEN);
  const ended = joined && joined.taskState === "ended";
  $("#set-languages").disabled = !(open && can("write")) || ended; // languages are a publisher's to change
  for (const id of ["#pause", "#resume", "#end"]) $(id).disabled = !(open && can("write")) || ended;
  $("#microphone").disabled = !(joined && joined.role === "publisher");
}

$("#set-languages").addEventListener("click", () => {
  send("set_task", { target_languages: [...$("#task-languages").selectedOptions].map((o) => o.value) });
});
$("#pause").addEventListener("click", () => send("pause_task"));
$("#resume").addEventListener("click", () => send("resume_task"));
$("#end").addEventListener("click", () => send("end_task"));
$("#microphone").addEventListener("click", () => speak().catch((error) => report(`microphone: ${error.message}`)));
$("#leave").addEventListener("click", () => leave());

async function speak() {
  const participant = joined.room.localParticipant;
  const on = !participant.isMicrophoneEnabled;
  await participant.setMicrophoneEnabled(on);
  $("#microphone").textContent = on ? "mute microphone" : "speak (microphone)";
}

async function leave() {
  if (!joined) return;
  const { room, socket, meters } = joined;
  joined = null;
  segments.clear();
  if (socket) socket.close();
  for (const context of meters) context.close();
  await room.disconnect();
  show($("#session"), false);
}

// For the browser test: a subscriber trying to publish anyway sees LiveKit's refusal.
window.lingoConsole = { speak: () => speak().catch((error) => report(`microphone: ${error.message}`)) };
