/**
 * Microphone capture on the audio thread: resamples whatever rate the AudioContext runs
 * at to 24 kHz mono (linear interpolation) and posts 20 ms blocks of PCM16 to the page.
 * process() does arithmetic only: buffers are preallocated, messages carry transferred
 * ArrayBuffers.
 */
const TARGET_RATE = 24000;
const BLOCK = 480; // 20 ms at 24 kHz

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / TARGET_RATE; // input samples per output sample
    this.position = 0; // fractional read position into the current input quantum
    this.previous = 0; // last sample of the previous quantum, for interpolation
    this.block = new Int16Array(BLOCK);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel || channel.length === 0) return true; // no input connected yet
    let pos = this.position;
    while (pos < channel.length) {
      const i = Math.floor(pos);
      const frac = pos - i;
      const a = i === 0 ? this.previous : channel[i - 1];
      const b = channel[i];
      const sample = a + (b - a) * frac;
      this.block[this.filled++] = Math.max(-32768, Math.min(32767, Math.round(sample * 32767)));
      if (this.filled === BLOCK) {
        this.port.postMessage(this.block.buffer, [this.block.buffer]);
        this.block = new Int16Array(BLOCK);
        this.filled = 0;
      }
      pos += this.step;
    }
    this.position = pos - channel.length;
    this.previous = channel[channel.length - 1];
    return true;
  }
}

registerProcessor('capture-processor', CaptureProcessor);
