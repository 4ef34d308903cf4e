// dancepipe live: send camera frames to the server, draw what comes back, measure it.
// The wire format is described in dancepipe/live/server.py.
'use strict';

const MAGIC = [0x44, 0x50, 0x4c, 0x31]; // "DPL1"
// Frames sent but not yet answered. The server keeps only the newest frame, so the page sends every
// camera frame; the limit only keeps a page from flooding a server that has stalled.
const MAX_IN_FLIGHT = 8;
const SEND_WIDTH = 640; // camera frames are scaled down to this width before sending
const WINDOW_MS = 2000; // frames/s and latency are measured over this window

const $ = (id) => document.getElementById(id);
const view = $('view');
const viewCtx = view.getContext('2d');
const video = $('camera');
const grab = $('grab');
const grabCtx = grab.getContext('2d');

// Everything measured, for the tests and for anyone curious (window.live in the console).
const live = window.live = {
  mode: null, hello: null, sent: 0, skipped: 0, shown: 0, lastSent: -1, lastAnswered: -1, lastAnswerAt: 0,
  shownAt: [], latencies: [], fps: 0, p50: null, p95: null, header: null, errors: [], closed: null,
};

const now = () => performance.timeOrigin + performance.now(); // ms since the epoch, as the server stamps

function showError(text) {
  const el = $('error');
  el.textContent = text;
  el.hidden = false;
  live.errors.push(text);
}

function percentile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : 0;
}

const recentSteps = [];

function updateNumbers(header) {
  const t = now();
  while (live.shownAt.length && live.shownAt[0] < t - WINDOW_MS) live.shownAt.shift();
  while (live.latencies.length && live.latencies[0][0] < t - WINDOW_MS) live.latencies.shift();
  const span = live.shownAt.length > 1 ? live.shownAt[live.shownAt.length - 1] - live.shownAt[0] : 0;
  live.fps = span > 0 ? (live.shownAt.length - 1) / (span / 1000) : 0;
  const lat = live.latencies.map((x) => x[1]).sort((a, b) => a - b);
  live.p50 = percentile(lat, 0.5);
  live.p95 = percentile(lat, 0.95);
  $('fps').textContent = `${live.fps.toFixed(1)} frames/s`;
  if (live.p50 !== null) $('latency').textContent = `${live.p50.toFixed(0)} / ${live.p95.toFixed(0)} ms`;
  const d = header.dropped;
  $('drops').textContent = `${d.camera} / ${d.label} / ${d.send}` + (live.skipped ? ` (+${live.skipped} not sent)` : '');
  const c = header.calibration;
  $('calibration').textContent = c.mode === null
    ? 'waiting: show your head and both ankles'
    : c.ready ? `ready (${c.usable} frames, ${c.mode})` : `collecting ${c.usable}/${c.needed} frames`;
  recentSteps.push(header.steps);
  if (recentSteps.length > 30) recentSteps.shift();
  const names = ['decode', 'pose', 'label', 'generator', 'face', 'encode'];
  $('steps').textContent = names.map((n) => `${n} ${median(recentSteps.map((s) => s[n])).toFixed(0)}`).join(' · ');
}

function layoutCaptions(panels) {
  const scale = view.getBoundingClientRect().width / view.width;
  const spans = $('captions').children;
  panels.forEach((w, i) => { spans[i].style.width = `${w * scale}px`; });
}

// Answers are drawn in order, one at a time; an answer older than the one on screen is skipped.
let drawing = Promise.resolve();

function onFrame(buffer) {
  const length = new DataView(buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
  const jpeg = new Blob([new Uint8Array(buffer, 4 + length)], {type: 'image/jpeg'});
  live.lastAnswered = Math.max(live.lastAnswered, header.seq);
  live.lastAnswerAt = performance.now();
  drawing = drawing.then(async () => {
    if (live.header && live.mode === 'camera' && header.seq < live.header.seq) return;
    const bitmap = await createImageBitmap(jpeg);
    if (view.width !== bitmap.width || view.height !== bitmap.height) {
      view.width = bitmap.width;
      view.height = bitmap.height;
    }
    viewCtx.drawImage(bitmap, 0, 0);
    bitmap.close();  // its size is gone from here on: view.width/height hold it
    const shown = now();
    live.shown += 1;
    live.header = header;
    live.shownAt.push(shown);
    live.latencies.push([shown, shown - header.captured]);
    layoutCaptions(header.panels);
    updateNumbers(header);
  });
}

function onText(message) {
  if (message.type === 'hello') {
    live.hello = message;
    live.mode = message.mode;
    $('target').textContent = `— ${message.target}`;
    $('status').textContent = `${message.device}, ${message.precision}, labels ${message.width}x${message.height}, ` +
      `pose size ${message.pose_size}, face GAN ${message.face ? 'on' : 'off'}`;
    $('recalibrate').disabled = false;
    if (message.mode === 'camera') startCamera();
    else $('status').textContent += ' · playing the server\'s --source video';
  } else if (message.type === 'busy') {
    showError(message.message);
  } else if (message.type === 'error') {
    if (message.fatal) showError(`The server stopped this session: ${message.message}`);
    else $('notice').textContent = message.message;
  }
}

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError('This browser offers no camera to this page (cameras need http://localhost or https); ' +
              'open the page on the machine running dancepipe live, or restart it with --source FILE.');
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({video: {width: {ideal: 640}, height: {ideal: 480}}, audio: false});
  } catch (e) {
    showError(`No camera could be opened (${e.name}: ${e.message}); allow the camera for this page, or restart ` +
              'dancepipe live with --source FILE to play a video instead.');
    return;
  }
  video.srcObject = stream;
  await video.play();
  const onVideoFrame = () => { capture(); video.requestVideoFrameCallback(onVideoFrame); };
  video.requestVideoFrameCallback(onVideoFrame);
}

let sending = false;

function capture() {
  if (ws.readyState !== WebSocket.OPEN || sending || !video.videoWidth) return;
  const inFlight = live.lastSent - live.lastAnswered;
  if (inFlight >= MAX_IN_FLIGHT && performance.now() - live.lastAnswerAt < 1000) {
    live.skipped += 1;
    return;
  }
  const captured = now();
  const scale = Math.min(1, SEND_WIDTH / video.videoWidth);
  grab.width = Math.round(video.videoWidth * scale);
  grab.height = Math.round(video.videoHeight * scale);
  grabCtx.drawImage(video, 0, 0, grab.width, grab.height);
  sending = true;
  grab.toBlob(async (blob) => {
    sending = false;
    if (!blob || ws.readyState !== WebSocket.OPEN) return;
    const body = new Uint8Array(await blob.arrayBuffer());
    const message = new Uint8Array(16 + body.length);
    const dv = new DataView(message.buffer);
    MAGIC.forEach((b, i) => dv.setUint8(i, b));
    dv.setUint32(4, live.sent, true);
    dv.setFloat64(8, captured, true);
    message.set(body, 16);
    live.lastSent = live.sent;
    live.sent += 1;
    ws.send(message.buffer);
  }, 'image/jpeg', 0.8);
}

const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
ws.binaryType = 'arraybuffer';
ws.onmessage = (ev) => (typeof ev.data === 'string' ? onText(JSON.parse(ev.data)) : onFrame(ev.data));
ws.onclose = (ev) => {
  live.closed = {code: ev.code, reason: ev.reason};
  $('recalibrate').disabled = true;
  if (ev.code !== 4409 && !live.errors.length) {
    showError(`The connection to the server closed (code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''}); ` +
              'reload the page once dancepipe live is running again.');
  }
};
$('recalibrate').onclick = () => ws.send(JSON.stringify({type: 'recalibrate'}));
