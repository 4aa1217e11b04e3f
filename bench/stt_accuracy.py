"""STT accuracy benchmark: word error rate of the project's STT engines and decoding settings,
on recorded human speech, on espeak-ng voices at several rates, and on both with background
noise at 20 dB SNR; decode time per utterance; and round-trip intelligibility of the TTS
engines (TTS output transcribed by the best STT setting here).

Each utterance goes through the whisper engine exactly as the service runs it (Silero VAD
segments, speculative and interim decodes, the hallucination filter), with 0.5 s of silence
before it and a Marker's flush after it; the driver lets every decode finish before the next
frame, as a decoder faster than speech would. WER is scored after `devkit.wer.normalise`.

    python bench/stt_accuracy.py                       # every setting, full corpus (~15 min, 2 cores)
    python bench/stt_accuracy.py --quick               # a few utterances per corpus
    python bench/stt_accuracy.py --settings default beam5 --tts-engines espeak --out results.json

Recorded speech needs Debian's pocketsphinx-testdata (apt-get install pocketsphinx-testdata).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import numpy.typing as npt

from bench import recorded_speech
from bench.turn_corpus import (
    FULL_RATES,
    FULL_VOICES,
    LISTS,
    QUESTIONS,
    SPEECH_RMS,
    Synthesiser,
    background_noise,
)
from devkit.wer import word_errors
from kit.audio import FRAME_SIZE, SAMPLE_RATE, resample
from kit.protocol import Word
from services.stt.engines.whisper_decoder import Decoded, DecodeJob
from services.stt.engines.whisper_engine import WhisperOptions, WhisperSttEngine

Pcm = npt.NDArray[np.float32]
SNR_DB = 20.0

#: The decoding settings compared (name -> WhisperOptions fields); "default" is the service's
#: (beam 5, windows of at least 10 s, interim words on).
#: The 30 s window is what faster-whisper's transcribe() uses; interim decodes there would cost
#: ~1.5 s each on 2 cores, so those settings decode each segment once, at its end.
SETTINGS: dict[str, dict[str, object]] = {
    "default": {},
    "interim off": {"interim": False},
    "window 5 s": {"min_window_s": 5.0},
    "window 3 s": {"min_window_s": 3.0},
    "greedy": {"beam_size": 1},
    "greedy, window 5 s": {"beam_size": 1, "min_window_s": 5.0},
    "window 30 s, interim off": {"min_window_s": 30.0, "interim": False},
    "greedy, window 30 s, interim off": {"beam_size": 1, "min_window_s": 30.0, "interim": False},
}
#: Engines the project has that are not scored here, and why.
NOT_SCORED = {
    "moshi (tiny checkpoints)": "random weights built for tests: what they transcribe means nothing",
    "moshi (kyutai/stt-1b-en_fr)": "needs its weights from Hugging Face and a GPU to run in real time; "
    "not reachable here",
}


@dataclass(frozen=True)
class Utterance:
    corpus: str
    name: str
    text: str
    audio: Pcm  # 24 kHz
    group: str = ""  # the voice, for per-voice tables


def _speech_rms(pcm: Pcm) -> float:
    """RMS over the louder half of 20 ms blocks: the speech, not the pauses around it."""
    blocks = pcm[: pcm.size // 480 * 480].reshape(-1, 480)
    energy = np.sort((blocks**2).mean(axis=1))
    return float(np.sqrt(energy[energy.size // 2 :].mean()))


def with_noise(utterance: Utterance, seed: int) -> Utterance:
    """The utterance under pink-ish noise `SNR_DB` below its speech."""
    rng = np.random.default_rng(seed)
    noise = background_noise(utterance.audio.size / SAMPLE_RATE + 0.01, SNR_DB, rng)[: utterance.audio.size]
    noise *= _speech_rms(utterance.audio) / SPEECH_RMS
    noisy = (utterance.audio + noise).astype(np.float32)
    return dataclasses.replace(utterance, corpus=f"{utterance.corpus} + noise {SNR_DB:.0f} dB", audio=noisy)


def recorded(quick: bool) -> list[Utterance]:
    clips = recorded_speech.clips()
    if quick:
        clips = clips[::3]
    return [Utterance("recorded", c.name, c.text, resample(c.audio, 16_000, SAMPLE_RATE)) for c in clips]


def synthetic(quick: bool) -> list[Utterance]:
    synth = Synthesiser()
    voices, rates, texts = FULL_VOICES, FULL_RATES, QUESTIONS[:4]
    if quick:
        voices, rates, texts = voices[:2], rates[::2], texts[:2]
    return [
        Utterance("espeak-ng", f"{voice}@{rate} #{i}", text, synth.speak(text, voice, rate), group=voice)
        for voice in voices
        for rate in rates
        for i, text in enumerate(texts)
    ]


class TimedEngine:
    """A whisper engine whose decode calls are timed."""

    def __init__(self, options: WhisperOptions) -> None:
        self.engine = WhisperSttEngine(1, options)
        self.engine.warmup()
        self.calls: list[float] = []
        decode = self.engine._decode

        def timed(jobs: list[DecodeJob]) -> list[Decoded]:
            started = time.perf_counter()
            try:
                return decode(jobs)
            finally:
                self.calls.append(time.perf_counter() - started)

        self.engine._worker._decode = timed

    def transcribe(self, audio: Pcm) -> str:
        """The words the engine sends for one utterance (a stream of its own)."""
        engine = self.engine
        # Then a Marker, as the service runs it: the engine's flush, and its delay in silence.
        tail = np.zeros((engine.delay_frames + -(-SAMPLE_RATE // 2 // FRAME_SIZE)) * FRAME_SIZE, np.float32)
        pcm = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), audio])
        pcm = np.concatenate([pcm, np.zeros(-pcm.size % FRAME_SIZE, np.float32), tail])
        flush_at = -(-(SAMPLE_RATE // 2 + audio.size) // FRAME_SIZE)
        active = np.ones(1, dtype=bool)
        words: list[str] = []
        for i, frame in enumerate(pcm.reshape(-1, FRAME_SIZE)):
            if i == flush_at:
                engine.flush([0])
            engine.step(frame[None], active, [0] if i == 0 else [])
            words += self._settle()
        return " ".join(words)

    def _settle(self) -> Iterator[str]:
        while True:
            idle = self.engine._worker.idle()
            for event in self.engine.late_words().events.get(0, []):
                if isinstance(event, Word):
                    yield event.text
            if idle:
                return
            time.sleep(0.002)

    def close(self) -> None:
        self.engine.close()


def score(engine: TimedEngine, utterances: list[Utterance]) -> dict[str, object]:
    """WER and decode cost over a corpus."""
    errors = words = 0
    per_utterance: list[float] = []
    calls: list[float] = []
    failures = []
    for utterance in utterances:
        engine.calls = []
        heard = engine.transcribe(utterance.audio)
        e, n = word_errors(utterance.text, heard)
        errors, words = errors + e, words + n
        per_utterance.append(sum(engine.calls))
        calls += engine.calls
        if e:
            failures.append({"name": utterance.name, "text": utterance.text, "heard": heard, "errors": e})
    return {
        "wer": errors / max(1, words),
        "errors": errors,
        "words": words,
        "utterances": len(utterances),
        "decode_ms_per_utterance": 1e3 * statistics.mean(per_utterance),
        "decode_ms_per_call_p50": 1e3 * statistics.median(calls) if calls else 0.0,
        "decode_ms_per_call_p90": 1e3 * float(np.percentile(calls, 90)) if calls else 0.0,
        "decodes_per_utterance": len(calls) / len(utterances),
        "misheard": failures,
    }


def tts_round_trip(engine_name: str, texts: list[str], stt: TimedEngine) -> dict[str, object]:
    """Speak each text with a TTS engine of the TTS service (its default voice), transcribe it."""
    from services.tts.engines import load_engine
    from services.tts.engines.base import SlotInput, StreamStart
    from services.tts.settings import TtsSettings
    from services.tts.text import split_words

    tts = load_engine(TtsSettings(engine=engine_name, batch_size=1))  # type: ignore[arg-type]
    errors = words = 0
    misheard = []
    for text in texts:
        result = tts.step([SlotInput(0, StreamStart(tts.default_voice), split_words(text), eos=True)])
        frames: list[Pcm] = []
        while True:
            out = result.outputs.get(0)
            if out is not None:
                frames += out.frames
                if out.error:
                    raise RuntimeError(out.error)
                if out.done:
                    break
            result = tts.step([])
        heard = stt.transcribe(np.concatenate(frames))
        e, n = word_errors(text, heard)
        errors, words = errors + e, words + n
        if e:
            misheard.append({"text": text, "heard": heard})
    return {
        "tts": engine_name,
        "wer": errors / max(1, words),
        "errors": errors,
        "words": words,
        "misheard": misheard,
    }


def decode_costs(model: str, threads: int, repeats: int = 5) -> list[dict[str, object]]:
    """Seconds per decode call of one 3 s recorded sentence, by window, beam and batch, and of
    its word alignment alone: the fastest of `repeats` (the least disturbed by a shared machine).
    The sentence is one that no window sends into a loop, so no call includes a 30 s redo."""
    import ctranslate2

    audio = recorded_speech.clip("librivox/sense_and_sensibility_01_austen_64kb-0880").audio
    rows = []
    for beam in (1, 5):
        engine = WhisperSttEngine(1, WhisperOptions(model=model, threads=threads, beam_size=beam))
        whisper = engine.decoder
        for window in (3.0, 5.0, 10.0, 30.0):
            whisper.min_window_s = window
            for batch in (1, 4):
                jobs = [DecodeJob(audio)] * batch
                times = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    whisper.decode(jobs)
                    times.append(time.perf_counter() - started)
                row = {"beam": beam, "window_s": window, "batch": batch, "decode_ms": 1e3 * min(times)}
                if beam == 1 and batch == 1:
                    mel = whisper._features(audio, window)[None]
                    encoded = whisper.model.encode(ctranslate2.StorageView.from_array(mel))
                    tokens = whisper.tokenizer.encode(" He was not an old-sposed young man?")
                    aligns = []
                    for _ in range(repeats):
                        started = time.perf_counter()
                        whisper.whisper.find_alignment(whisper.tokenizer, [tokens], encoded, [300])
                        aligns.append(time.perf_counter() - started)
                    row["align_ms"] = 1e3 * min(aligns)
                rows.append(row)
        engine.close()
    return rows


def table(rows: list[dict[str, object]], corpora: list[str]) -> str:
    lines = [
        "| setting | "
        + " | ".join(f"WER {c}" for c in corpora)
        + " | decode ms / utterance | ms / decode (p50, p90) |",
        "|---|" + "---:|" * len(corpora) + "---:|---:|",
    ]
    for setting in dict.fromkeys(str(r["setting"]) for r in rows):
        mine = {r["corpus"]: r for r in rows if r["setting"] == setting}
        wers = " | ".join(f"{100 * float(mine[c]['wer']):.1f} %" if c in mine else "-" for c in corpora)
        clean = mine[corpora[0]]
        lines.append(
            f"| {setting} | {wers} | {float(clean['decode_ms_per_utterance']):.0f} | "
            f"{float(clean['decode_ms_per_call_p50']):.0f}, {float(clean['decode_ms_per_call_p90']):.0f} |"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--model", default="tiny.en", help="whisper model (STT_WHISPER_MODEL's values)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tts-engines", nargs="*", default=["espeak"], help="TTS engines for the round trip")
    parser.add_argument("--quick", action="store_true", help="a few utterances per corpus")
    parser.add_argument("--costs-only", action="store_true", help="only the decode cost table")
    parser.add_argument("--out", type=Path, help="write every number (and each misheard utterance) as JSON")
    return parser.parse_args()


def print_decode_costs(costs: list[dict[str, object]]) -> None:
    print("Decode cost of a 3 s recorded sentence (fastest of 5 calls):\n")
    print("| beam | window | batch | ms per call | ms per segment | align ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    for c in costs:
        per = float(c["decode_ms"]) / int(c["batch"])  # type: ignore[call-overload]
        align = f"{float(c['align_ms']):.0f}" if "align_ms" in c else ""
        call = f"{float(c['decode_ms']):.0f}"
        print(f"| {c['beam']} | {c['window_s']:.0f} s | {c['batch']} | {call} | {per:.0f} | {align} |")
    print()


def all_corpora(quick: bool) -> dict[str, list[Utterance]]:
    """Recorded speech (where installed) and espeak-ng's, each also with noise added."""
    corpora: dict[str, list[Utterance]] = {}
    if recorded_speech.available():
        corpora["recorded"] = recorded(quick)
    else:
        print(f"(no recorded speech: apt-get install pocketsphinx-testdata for {recorded_speech.TESTDATA})")
    corpora["espeak-ng"] = synthetic(quick)
    for utterances in list(corpora.values()):
        noisy = [with_noise(u, seed) for seed, u in enumerate(utterances)]
        corpora[noisy[0].corpus] = noisy
    return corpora


def score_settings(
    args: argparse.Namespace, corpora: dict[str, list[Utterance]]
) -> tuple[list[dict[str, object]], dict[str, float]]:
    """Every setting on every corpus (one row each), and the default's WER per espeak-ng voice."""
    rows: list[dict[str, object]] = []
    per_voice: dict[str, float] = {}
    for setting in args.settings:
        options = WhisperOptions(model=args.model, threads=args.threads, **SETTINGS[setting])  # type: ignore[arg-type]
        engine = TimedEngine(options)
        for corpus, utterances in corpora.items():
            result = score(engine, utterances)
            rows.append({"setting": setting, "corpus": corpus, **result})
            print(f"  {setting:22s} {corpus:28s} WER {100 * float(result['wer']):5.1f} %", flush=True)
            if setting == "default" and corpus == "espeak-ng":
                for voice in dict.fromkeys(u.group for u in utterances):
                    mine = [u for u in utterances if u.group == voice]
                    per_voice[voice] = float(score(engine, mine)["wer"])
        engine.close()
    return rows, per_voice


def round_trips(
    args: argparse.Namespace, rows: list[dict[str, object]], first_corpus: str
) -> list[dict[str, object]]:
    """Each TTS engine's default voice heard by whisper on the setting best on `first_corpus`."""
    ranked = [r for r in rows if r["corpus"] == first_corpus]
    best = min(ranked, key=lambda r: float(r["wer"]))["setting"]
    stt = TimedEngine(WhisperOptions(model=args.model, threads=args.threads, **SETTINGS[str(best)]))  # type: ignore[arg-type]
    texts = list(QUESTIONS) + [" ".join(items) for items in LISTS]
    if args.quick:
        texts = texts[:3]
    print(f"\nRound trip (TTS default voice -> whisper {args.model}, setting '{best}'):\n")
    print("| TTS engine | WER | words |")
    print("|---|---:|---:|")
    trips = []
    for name in args.tts_engines:
        trip = tts_round_trip(name, texts, stt)
        trips.append(trip)
        print(f"| {name} | {100 * float(trip['wer']):.1f} % | {trip['words']} |")
    stt.close()
    return trips


def main() -> None:
    args = parse_args()
    command = "python bench/stt_accuracy.py " + " ".join(sys.argv[1:])
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {args.threads} threads"
    print(f"# STT accuracy: whisper {args.model}, {machine}\n")
    print(f"`{command}`\n")
    costs = decode_costs(args.model, args.threads) if recorded_speech.available() else []
    if costs:
        print_decode_costs(costs)
    if args.costs_only:
        if args.out:
            args.out.write_text(json.dumps({"command": command, "decode_costs": costs}, indent=1))
        return

    corpora = all_corpora(args.quick)
    print(", ".join(f"{name}: {len(u)} utterances" for name, u in corpora.items()), "\n")
    rows, per_voice = score_settings(args, corpora)
    print()
    print(table(rows, list(corpora)))
    if per_voice:
        print(
            "\nespeak-ng, default setting, per voice: "
            + ", ".join(f"{v} {100 * w:.1f} %" for v, w in per_voice.items())
        )
    print("\nNot scored: " + "; ".join(f"{name}: {why}" for name, why in NOT_SCORED.items()))

    trips = round_trips(args, rows, next(iter(corpora))) if args.tts_engines else []
    if args.out:
        report = {
            "command": command,
            "machine": {"cpus": os.cpu_count(), "arch": platform.machine()},
            "model": args.model,
            "settings": {name: SETTINGS[name] for name in args.settings},
            "decode_costs": costs,
            "results": rows,
            "espeak_per_voice": per_voice,
            "round_trip": trips,
            "not_scored": NOT_SCORED,
        }
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
