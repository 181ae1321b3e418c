// Pointer capture on the root element: the template is re-rendered (DOM-diffed) on every value
// change, so listeners live on `element`, which is never replaced. `pick` is throttled while dragging.
// A click on a preset chip sets exactly that preset.
let dragging = false, lastSent = 0;
const clamp = (x) => Math.max(-1, Math.min(1, x));
function send(v, a, force) {
  const r = Math.hypot(v, a);  // the emotion plane is the unit disc: the rim holds the strongest emotions
  if (r > 1) { v /= r; a /= r; }
  props.value = clamp(v).toFixed(2) + ',' + clamp(a).toFixed(2);
  const now = Date.now();
  if (force || now - lastSent > 80) { lastSent = now; trigger('pick'); }
}
function fromPointer(ev, force) {
  const pad = element.querySelector('.va-pad');
  const r = pad.getBoundingClientRect();
  send(((ev.clientX - r.left) / r.width) * 2 - 1, 1 - ((ev.clientY - r.top) / r.height) * 2, force);
}
element.addEventListener('pointerdown', (ev) => {
  if (!ev.target.closest('.va-pad') || ev.target.closest('.va-cat')) return;
  dragging = true; element.setPointerCapture(ev.pointerId); fromPointer(ev, true);
});
element.addEventListener('pointermove', (ev) => { if (dragging) fromPointer(ev, false); });
const stop = (ev) => { if (dragging) { dragging = false; fromPointer(ev, true); } };
element.addEventListener('pointerup', stop);
element.addEventListener('pointercancel', stop);
element.addEventListener('click', (ev) => {  // a preset chip: exactly its coordinates
  const chip = ev.target.closest('.va-cat');
  if (!chip) return;
  const [v, a] = chip.dataset.va.split(',').map(Number);
  send(v, a, true);
});
element.addEventListener('keydown', (ev) => {
  const d = { ArrowLeft: [-0.05, 0], ArrowRight: [0.05, 0], ArrowUp: [0, 0.05], ArrowDown: [0, -0.05] }[ev.key];
  if (!d) return;
  ev.preventDefault();
  const [v, a] = String(props.value).split(',').map(Number);
  send((v || 0) + d[0], (a || 0) + d[1], true);
});
