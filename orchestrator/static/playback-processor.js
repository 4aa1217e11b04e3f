/**
 * Assistant audio on the audio thread: a preallocated ring buffer of 24 kHz samples,
 * played at the context's rate (linear interpolation), with a small jitter buffer.
 *
 * Policy: playback starts once JITTER_MS of audio is queued (or the response has
 * ended); an underrun plays silence and waits for JITTER_MS again; an overflow drops
 * the oldest audio. `flush` empties the buffer at once (barge-in). Every ~50 ms the
 * processor reports how many samples of the current item it has played, so the page
 * can tell the server exactly what the user heard.
 */
const SOURCE_RATE = 24000;
const CAPACITY = SOURCE_RATE * 60; // one minute ahead is far more than a reply needs
const JITTER_MS = 80;
const REPORT_EVERY_S = 0.05;

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ring = new Float32Array(CAPACITY);
    this.read = 0; // fractional, in source samples
    this.write = 0;
    this.playing = false;
    this.ended = false;
    this.item = null;
    this.played = 0; // source samples of the current item played
    this.step = SOURCE_RATE / sampleRate;
    this.lastReport = 0;
    this.announced = null; // the item whose first audible sample has been reported
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  available() {
    return this.write - Math.floor(this.read);
  }

  onMessage(msg) {
    if (msg.type === 'push') {
      if (msg.item !== this.item) {
        this.item = msg.item;
        this.played = 0;
      }
      this.ended = false;
      const samples = msg.samples;
      const overflow = this.available() + samples.length - CAPACITY;
      if (overflow > 0) this.read += overflow; // drop the oldest
      for (let i = 0; i < samples.length; i++) this.ring[(this.write + i) % CAPACITY] = samples[i];
      this.write += samples.length;
    } else if (msg.type === 'end') {
      this.ended = true;
    } else if (msg.type === 'flush') {
      this.read = this.write;
      this.playing = false;
      this.report(true);
    }
  }

  report(force) {
    if (!force && currentTime - this.lastReport < REPORT_EVERY_S) return;
    this.lastReport = currentTime;
    this.port.postMessage({ type: 'played', item: this.item, samples: this.played, buffered: this.available() });
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    const queued = this.available();
    if (!this.playing && (queued >= (SOURCE_RATE * JITTER_MS) / 1000 || (this.ended && queued > 0))) {
      this.playing = true;
      if (this.item !== this.announced) {
        // The first sample of this reply becomes audible now: the page measures voice to voice.
        this.announced = this.item;
        this.port.postMessage({ type: 'started', item: this.item, time: currentTime });
      }
    }
    for (let i = 0; i < out.length; i++) {
      if (this.playing && this.available() > 1) {
        const idx = Math.floor(this.read);
        const frac = this.read - idx;
        const a = this.ring[idx % CAPACITY];
        const b = this.ring[(idx + 1) % CAPACITY];
        out[i] = a + (b - a) * frac;
        const before = Math.floor(this.read);
        this.read += this.step;
        this.played += Math.floor(this.read) - before;
      } else {
        out[i] = 0;
        if (this.playing && !this.ended) this.playing = false; // underrun: rebuffer
      }
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.report(false);
    return true;
  }
}

registerProcessor('playback-processor', PlaybackProcessor);
