"""Deterministic random-weight Kyutai STT and TTS checkpoints: tiny ones for CPU tests and
demos, and (`build_random_checkpoints`) any published architecture's size for the benchmarks.

No model can be downloaded in CI, so the project writes its own checkpoints in the
on-disk format of Kyutai's Hugging Face repos (``config.json`` with the real keys, LM
and Mimi safetensors, a Mimi config, a sentencepiece tokenizer, a TTS voice embedding),
with dimensions small enough to step in milliseconds on a CPU. They load through the
unchanged ``moshi`` loaders, from a local directory or from a Hugging Face cache under
a repo id that is clearly not Kyutai's.

    python -m devkit.checkpoints --out build/tiny --hf-home build/hf

Random weights say nothing meaningful: tests check protocol, timing, state and shapes, and
benchmarks the cost of a step, which is the same whatever the weights hold.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import string
import tempfile
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_OWNER = "unmute-slurm"
STT_REPO = f"{REPO_OWNER}/tiny-stt"
STT_NOHEADS_REPO = f"{REPO_OWNER}/tiny-stt-noheads"
TTS_REPO = f"{REPO_OWNER}/tiny-tts"
TTS_VOICES_REPO = f"{REPO_OWNER}/tiny-tts-voices"
TTS_MODEL_ID = {"sig": "tinytts0", "epoch": 1}
VOICE_NAMES = ("tiny/default.wav", "tiny/other.wav")

# Every character tests send must be in the tokenizer: an unknown one maps to id 0,
# which collides with the STT word-boundary and TTS new-word tokens.
_CORPUS = [
    "hello world, this is a test of the tiny speech models.",
    "The quick brown fox jumps over the lazy dog! Is it? Yes: it's 42 - or 7.",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789 ,.;:!?'\"-()",
    "good morning, how are you today? I am fine, thank you very much.",
    "unmute on slurm speaks and listens in real time on one gpu node.",
]

_DEPFORMER = dict(
    depformer_dim=32,
    depformer_num_heads=2,
    depformer_num_layers=1,
    depformer_dim_feedforward=None,
    depformer_multi_linear=True,
    depformer_pos_emb="none",
    depformer_weights_per_step=True,
    depformer_low_rank_embeddings=None,
)

_LM_COMMON = dict(
    dim=64,
    num_heads=4,
    num_layers=2,
    hidden_scale=4.125,
    card=64,
    n_q=32,
    max_period=100000.0,
    gating="silu",
    norm="rms_norm_f32",
    positional_embedding="rope",
    causal=True,
    layer_scale=None,
    existing_text_padding_id=3,
    **_DEPFORMER,
)


@dataclass(frozen=True)
class TinyCheckpoints:
    """Where the checkpoints were written."""

    root: Path
    hf_home: Path | None

    @property
    def stt_dir(self) -> Path:
        """STT model with end-of-turn heads (like stt-1b-en_fr-candle)."""
        return self.root / "stt"

    @property
    def stt_noheads_dir(self) -> Path:
        """STT model without end-of-turn heads and with a silence prefix (like stt-2.6b-en)."""
        return self.root / "stt-noheads"

    @property
    def tts_dir(self) -> Path:
        """TTS model with speaker cross-attention (like tts-1.6b-en_fr)."""
        return self.root / "tts"

    @property
    def voices_dir(self) -> Path:
        """Voice embeddings, laid out like kyutai/tts-voices."""
        return self.root / "tts-voices"


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)


def train_tokenizer(out: Path, lines: list[str], vocab_size: int, *, exact: bool = False) -> int:
    """A sentencepiece model with Kyutai's special ids (0 unk, 1 bos, 2 eos, 3 pad), trained on
    `lines`; with `exact`, exactly `vocab_size` pieces, else at most. Returns its vocabulary size."""
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(lines) + "\n")
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(Path(tmp) / "tokenizer"),
            vocab_size=vocab_size,
            model_type="unigram",
            character_coverage=1.0,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=3,
            hard_vocab_limit=exact,
            num_threads=1,
            minloglevel=2,
        )
        shutil.copy(Path(tmp) / "tokenizer.model", out)
    return spm.SentencePieceProcessor(model_file=str(out)).vocab_size()


def tiny_mimi_config() -> dict:
    """Mimi's real layout (1920-sample frames, 32 codebooks) at toy widths."""
    from moshi.models import loaders

    cfg = deepcopy(loaders._mimi_config)
    # Keep the SEANet ratios [8, 6, 5, 4]: they are what makes a frame 1920 samples.
    cfg["seanet"].update(dimension=32, n_filters=4)
    cfg["quantizer"].update(dimension=16, n_q=32, bins=64, input_dimension=32, output_dimension=32)
    cfg["transformer"].update(
        d_model=32, num_heads=2, num_layers=1, dim_feedforward=64, input_dimension=32, output_dimensions=[32]
    )
    return cfg


def _save(state: dict, path: Path, dtype=None) -> None:
    from safetensors.torch import save_file

    save_file(
        {
            k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
            for k, v in state.items()
        },
        str(path),
    )


def _calibration_audio():
    """Four seconds of silence, noise, tones and warbles: enough variety to fit codebooks."""
    import torch

    t = torch.arange(6000) / 24000
    segments = []
    for k in range(16 * 4):
        kind = k % 4
        if kind == 0:
            segments.append(torch.zeros(6000))
        elif kind == 1:
            segments.append(torch.randn(6000) * (0.05 + 0.01 * k))
        elif kind == 2:
            segments.append(0.3 * torch.sin(2 * np.pi * (150 + 40 * k) * t))
        else:
            segments.append(0.3 * torch.sin(2 * np.pi * (300 + 30 * k) * t) * torch.sin(2 * np.pi * 3 * t))
    return torch.cat(segments)[None, None]


def _write_mimi(directory: Path, cfg: dict, *, silence_code: bool = False) -> int | None:
    """Random Mimi whose codebooks are fitted (moshi's own k-means init) to varied audio.

    Left at their zero init, every codebook entry is equal and all audio encodes to
    code 0, so the STT would see nothing and the TTS would decode one constant frame.
    With `silence_code` (an STT's Mimi, which only encodes), digital silence gets a code of
    its own in the first codebook whatever came before it (`_frame_local_encoder`,
    `_give_silence_its_code`); that code is returned.
    """
    import torch
    from moshi.models import loaders

    mimi = loaders.get_mimi(None, cfg, num_codebooks=32)
    if silence_code:
        _frame_local_encoder(mimi)
    mimi.train()  # training mode is what makes the quantizer run its k-means init
    with torch.no_grad():
        mimi.quantizer(mimi._encode_to_unquantized_latent(_calibration_audio()), mimi.frame_rate)
    mimi.eval()
    code = _give_silence_its_code(mimi) if silence_code else None
    (directory / "mimi_config.json").write_text(json.dumps(cfg, indent=2))
    _save(mimi.state_dict(), directory / "mimi.safetensors")
    return code


def _frame_local_encoder(mimi) -> None:
    """Make Mimi's encoder map digital silence to exactly zero, whatever came before it.

    Its transformer's layer scales are zeroed, so its layers add nothing and a frame's code
    depends on the last few hundred ms of audio only (SEANet's causal convolutions); the
    convolutions' biases are zeroed too, so silence is zero at every layer: exactly, on any
    kernel, and from a stream's first frame (whose convolutions start from zeros).
    """
    import torch

    with torch.no_grad():
        for name, param in mimi.encoder_transformer.named_parameters():
            if ".layer_scale_" in name:
                param.zero_()
        for part in (mimi.encoder, mimi.downsample):
            for name, param in part.named_parameters():
                if name.endswith(".bias"):
                    param.zero_()


# The silence code's cell, relative to a typical latent of sound: latents within ~this much
# of zero (digital silence's latent) encode to it. Noise at -60 dBFS lies well inside, the
# quietest tenth of speech through this tiny random Mimi about at its edge.
SILENCE_CELL = 1e-2


def _give_silence_its_code(mimi) -> int:
    """Give digital silence (latent zero: `_frame_local_encoder`) a code of its own in the first
    codebook, and only silence: the entry nearest to zero becomes zero, and 2 x dim others are
    put around it at `SILENCE_CELL`, one each way along the axes of a random basis, so that any
    sound (or quiet speech: this tiny random Mimi maps all audio to nearly one latent) encodes
    to one of those by the direction it lies in. Returns the silence code."""
    import torch

    with torch.no_grad():
        rvq = mimi.quantizer.rvq_first
        sound = mimi._encode_to_unquantized_latent(_calibration_audio())
        sound = (rvq.input_proj(sound) if rvq.input_proj is not None else sound)[0].T
        codebook = rvq.vq.layers[0]._codebook
        entries = codebook.embedding_sum / codebook.cluster_usage.clamp(min=codebook.epsilon)[:, None]
        order = entries.norm(dim=1).argsort().tolist()
        dim = entries.shape[1]
        code, around = order[0], order[1 : 1 + 2 * dim]
        basis, _ = torch.linalg.qr(torch.randn(dim, dim))
        entries[code] = 0.0
        entries[around] = SILENCE_CELL * float(sound.norm(dim=1).median()) * torch.cat([basis, -basis])
        usage = codebook.cluster_usage.clamp(min=codebook.epsilon)
        codebook.embedding_sum.copy_(entries * usage[:, None])
        codebook.cluster_usage.copy_(usage)
    return code


def _file_names() -> dict:
    return dict(
        moshi_name="model.safetensors",
        mimi_name="mimi.safetensors",
        mimi_config_name="mimi_config.json",
        tokenizer_name="tokenizer.model",
    )


def tiny_stt_config(text_card: int, *, heads: bool, delay_s: float, prefix_s: float) -> dict:
    """config.json of a tiny STT, with the keys of Kyutai's STT repos."""
    cfg: dict = dict(
        _LM_COMMON,
        text_card=text_card,
        dep_q=0,
        delays=[0] * 33,
        context=750,
        conditioners={},
        fuser=None,
        cross_attention=False,
        model_type="stt",
        stt_config={"audio_delay_seconds": delay_s, "audio_silence_prefix_seconds": prefix_s},
        lm_gen_config={"temp": 0.0, "temp_text": 0.0, "top_k": 250, "top_k_text": 50},
        model_id={"sig": "tinystt0", "epoch": 1},
        **_file_names(),
    )
    if heads:
        cfg.update(extra_heads_num_heads=4, extra_heads_dim=6)
    return cfg


def _speechlike_frames(n: int):
    """Frames of warbling tone with a silent gap every 2.4 s: a crude stand-in for speech."""
    import torch

    t = torch.arange(1920) / 24000
    for i in range(n):
        voiced = i % 30 < 18
        yield (
            voiced,
            ((0.3 * torch.sin(2 * np.pi * (200 + 37 * (i % 11)) * t)) if voiced else torch.zeros(1920))[
                None, None
            ],
        )


def _relabel_pad(lm, mimi) -> None:
    """Give a damped random STT a real one's pad by renaming a token (full-size recipe).

    A real STT model emits the pad token (3) through silence. The damped random model does
    emit one token mostly in silence, just not that id, so it is swapped with 3 (in both the
    output head and the text embedding, which leaves the network's function unchanged up to
    the names).
    """
    from collections import Counter

    import torch
    from moshi.models import LMGen

    silent: Counter[int] = Counter()
    gen = LMGen(lm, temp=0, temp_text=0)
    device = next(lm.parameters()).device
    with torch.no_grad(), mimi.streaming(1), gen.streaming(1):
        for is_voiced, pcm in _speechlike_frames(120):
            token = int(gen.step(mimi.encode(pcm.to(device)))[0, 0, 0])
            if not is_voiced:
                silent[token] += 1
    pad = silent.most_common(1)[0][0]
    with torch.no_grad():
        for table in (lm.text_linear.weight, lm.text_emb.weight):
            if pad != 3:
                table[[pad, 3]] = table[[3, pad]]


def _random_lm(cfg: dict, device: str):
    """The LM of `cfg` with moshi's random init: fp32 on CPU (bf16 matmuls are slow there), else bf16."""
    import torch
    from moshi.models import loaders

    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    return loaders.get_moshi_lm(None, lm_kwargs=lm_kwargs(cfg), device=device, dtype=dtype)


def _damp_residual_branches(lm, scale: float) -> None:
    """Scale what each transformer layer adds to its input (attention and feed-forward
    outputs), as a layer scale does: each step's output then follows the input at hand."""
    import torch

    with torch.no_grad():
        for name, param in lm.transformer.named_parameters():
            if ".self_attn.out_projs." in name or ".gating.linear_out." in name or ".linear2." in name:
                param.mul_(scale)


def _write_stt(  # noqa: PLR0917 (the builders call it positionally)
    directory: Path,
    cfg: dict,
    mimi_cfg: dict,
    tokenizer: Path,
    device: str = "cpu",
    audio_driven: bool = False,
) -> None:
    """Write one random STT: the tiny recipe, or with `audio_driven` the full-size one.

    Tiny: what the STT says is built in, not left to what random weights happen to do on
    one CPU's kernels (they differ between machines): digital silence is a pad and a pause,
    and sound is words (`_reserve_channels`, `_silence_means_pad`, `_sound_means_words`).
    Every step still runs the whole random network, so it costs what a random model costs.

    Full size: a random transformer's text output follows the average of its whole context:
    one token repeats through speech and the silence after it, so the STT would send words
    while the user is quiet, which holds a turn open. Damped layers make each step's token
    follow the audio at hand, and the token it emits in silence is renamed pad, so speech
    comes out as words closed by pads (stt-1b-en_fr's size, on CPU: words in speech, none in
    silence). The step costs the same: the same dense products.
    """
    import torch
    from moshi.models import loaders

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(cfg, indent=2))
    silence_code = _write_mimi(directory, mimi_cfg, silence_code=not audio_driven)
    lm = _random_lm(cfg, device)
    if silence_code is None:
        _damp_residual_branches(lm, 0.01)
        mimi = loaders.get_mimi(directory / "mimi.safetensors", mimi_cfg, num_codebooks=32, device=device)
        _relabel_pad(lm, mimi)
    else:
        cycle = _word_cycle(tokenizer)
        silence, *states = _reserve_channels(lm, 1 + len(cycle))
        with torch.no_grad():
            # A stream's first step reads the initial token, not a code: it starts in silence too.
            lm.emb[0].weight[[silence_code, lm.initial_token_id], silence] = CHANNEL_LEVEL
        _silence_means_pad(lm, silence)
        _sound_means_words(lm, states, cycle)
    _save(lm.state_dict(), directory / "model.safetensors", torch.bfloat16)  # as Kyutai ships them


# A reserved channel's value when it is on, against the O(1) values of the others: the final
# RMS norm then leaves little but the channels that are on, so what they vote for leads by
# ~CHANNEL_WEIGHT x sqrt(dim / channels on) logits.
CHANNEL_LEVEL = 1000.0
CHANNEL_WEIGHT = 8.0


def _reserve_channels(lm, count: int) -> list[int]:
    """Reserve the last `count` channels of the LM's residual stream for set meanings.

    No embedding writes to them unless told to, and no layer does (their output rows are
    zeroed), so each holds exactly what its embeddings put there, on every step, whatever the
    context. The output head and end-of-turn heads read them only where told to.
    """
    import torch

    dim = lm.text_emb.weight.shape[1]
    channels = list(range(dim - count, dim))
    with torch.no_grad():
        for table in [*(e.weight for e in lm.emb), lm.text_emb.weight, lm.text_linear.weight]:
            table[:, channels] = 0.0
        for head in lm.extra_heads:
            head.weight[:, channels] = 0.0
        for name, param in lm.transformer.named_parameters():
            if any(part in name for part in (".self_attn.out_projs.", ".gating.linear_out.", ".linear2.")):
                param[channels] = 0.0  # the output rows (a bias has one entry per row too)
    return channels


def _silence_means_pad(lm, channel: int) -> None:
    """The silence channel (on for the first codebook's silence code) makes the pad token (3),
    and each end-of-turn head's pause class (index 0), win on silence. It outvotes the word
    cycle's channel, which the pad's own embedding turns on, by weighing twice as much."""
    import torch

    with torch.no_grad():
        lm.text_linear.weight[3, channel] = 2 * CHANNEL_WEIGHT
        for head in lm.extra_heads:
            head.weight[0, channel] = CHANNEL_WEIGHT


def _word_cycle(tokenizer: Path) -> list[int]:
    """The tiny STT's words: a piece that starts a word, a piece that goes on with it, then the
    word-start token (0) that ends it; the first such pair of letters-only pieces."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    pieces = [(i, sp.id_to_piece(i)) for i in range(4, sp.vocab_size())]
    first = next(i for i, p in pieces if p.startswith("▁") and p[1:].isalpha() and len(p) > 2)
    second = next(i for i, p in pieces if p.isalpha())
    return [first, second, 0]


def _sound_means_words(lm, states: list[int], cycle: list[int]) -> None:
    """On sound, the previous text token picks the next one round `cycle`: a word of two
    pieces every three frames, ended by a word-start token. Each state is a channel that the
    previous token's embedding turns on and that votes for the cycle's next token; a pad, a
    word-start or the initial token (anything outside the cycle) starts it again."""
    import torch

    with torch.no_grad():
        previous = {cycle[i - 1]: states[i] for i in range(1, len(cycle))}
        for token in range(lm.text_emb.weight.shape[0]):
            lm.text_emb.weight[token, previous.get(token, states[0])] = CHANNEL_LEVEL
        for state, token in zip(states, cycle, strict=True):
            lm.text_linear.weight[token, state] = CHANNEL_WEIGHT


_NON_LM_KEYS = {
    "moshi_name",
    "mimi_name",
    "mimi_config_name",
    "tokenizer_name",
    "lora_name",
    "model_type",
    "lm_gen_config",
    "tts_config",
    "stt_config",
    "model_id",
}


def lm_kwargs(config: dict) -> dict:
    """The keys of a config.json that moshi's LM constructor takes (the rest are for its loaders)."""
    return {k: v for k, v in config.items() if k not in _NON_LM_KEYS}


def random_init_info(config: dict, tokenizer: Path, mimi_config: dict):
    """A moshi `CheckpointInfo` for `config` with no weight files: moshi's loaders then
    initialise the LM and Mimi at random (benchmarks of full-size architectures)."""
    from moshi.models.loaders import CheckpointInfo

    return CheckpointInfo(
        moshi_weights=None,  # type: ignore[arg-type]  (None = random init in moshi's loaders)
        mimi_weights=None,  # type: ignore[arg-type]
        tokenizer=tokenizer,
        lm_config=lm_kwargs(config),
        raw_config=config,
        mimi_config=mimi_config,
        model_type=config["model_type"],
        lm_gen_config=config.get("lm_gen_config", {}),
        tts_config=config.get("tts_config", {}),
        stt_config=config.get("stt_config", {}),
        model_id=config.get("model_id", {}),
    )


def tiny_tts_config(text_card: int) -> dict:
    """config.json of a tiny TTS, with the keys of kyutai/tts-1.6b-en_fr."""
    values = [f"{v:.1f}" for v in np.arange(1.0, 4.01, 0.5)]
    return dict(
        _LM_COMMON,
        text_card=text_card,
        dep_q=32,
        delays=[0, 0] + [2] * 31,
        context=500,
        demux_second_stream=True,
        cross_attention=True,
        conditioners={
            "speaker_wavs": {"type": "tensor", "tensor": {"dim": 32}},
            "cfg": {
                "type": "lut",
                "lut": {"n_bins": len(values), "dim": 16, "tokenizer": "noop", "possible_values": values},
            },
            "control": {
                "type": "lut",
                "lut": {"n_bins": 1, "dim": 16, "tokenizer": "noop", "possible_values": ["ok"]},
            },
        },
        fuser={
            "cross": ["speaker_wavs"],
            "sum": ["cfg", "control"],
            "prepend": [],
            "cross_attention_pos_emb": False,
        },
        model_type="tts",
        tts_config={"audio_delay": 0.32, "second_stream_ahead": 2, "multistream": False},
        lm_gen_config={},
        model_id=TTS_MODEL_ID,
        **_file_names(),
    )


def _write_tts(
    directory: Path, voices: Path, cfg: dict, mimi_cfg: dict, *, voice_frames: int = 25, device: str = "cpu"
) -> None:
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(cfg, indent=2))
    _write_mimi(directory, mimi_cfg)
    _save(_random_lm(cfg, device).state_dict(), directory / "model.safetensors", torch.bfloat16)

    # A real voice is the unquantised Mimi latent of ~10 s of speech (scripts/tts_make_voice.py).
    # The tiny random Mimi maps all audio to nearly the same latent, so tiny voices are
    # drawn at random instead: same format and shape, and distinct enough to tell apart.
    suffix = f".{cfg['model_id']['sig']}@{cfg['model_id']['epoch']}.safetensors"
    generator = torch.Generator().manual_seed(1234)
    for name in VOICE_NAMES:
        dim = cfg["conditioners"]["speaker_wavs"]["tensor"]["dim"]
        latent = torch.randn(1, dim, voice_frames, generator=generator)
        voice_file = voices / f"{name}{suffix}"
        voice_file.parent.mkdir(parents=True, exist_ok=True)
        _save({"speaker_wavs": latent}, voice_file)


def _add_to_hf_cache(hf_home: Path, repo_id: str, source: Path) -> None:
    """Lay `source` out as huggingface_hub's cache does, so `hf_hub_download` finds it offline."""
    files = sorted(p for p in source.rglob("*") if p.is_file())
    digest = hashlib.sha1()
    for p in files:
        digest.update(p.relative_to(source).as_posix().encode())
        digest.update(p.read_bytes())
    revision = digest.hexdigest()
    repo_dir = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    if repo_dir.exists():
        shutil.rmtree(repo_dir)
    snapshot = repo_dir / "snapshots" / revision
    for p in files:
        rel = p.relative_to(source)
        blob = repo_dir / "blobs" / hashlib.sha256(p.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)


def build_tiny_checkpoints(out: Path, hf_home: Path | None = None, seed: int = 0) -> TinyCheckpoints:
    """Write the tiny STT (with and without end-of-turn heads) and TTS checkpoints.

    The same seed always gives byte-identical files. With `hf_home`, every checkpoint
    is also placed in that Hugging Face cache under the ``unmute-slurm/tiny-*`` repo ids.
    """
    out = Path(out)
    result = TinyCheckpoints(out, Path(hf_home) if hf_home else None)
    _seed(seed)
    for d in (result.stt_dir, result.stt_noheads_dir, result.tts_dir, result.voices_dir):
        d.mkdir(parents=True, exist_ok=True)
    tokenizer = out / "tokenizer.model"
    text_card = train_tokenizer(tokenizer, _CORPUS * 4, 128)
    mimi_cfg = tiny_mimi_config()
    heads = tiny_stt_config(text_card, heads=True, delay_s=0.5, prefix_s=0.0)
    _write_stt(result.stt_dir, heads, mimi_cfg, tokenizer)
    noheads = tiny_stt_config(text_card, heads=False, delay_s=0.5, prefix_s=0.24)
    _write_stt(result.stt_noheads_dir, noheads, mimi_cfg, tokenizer)
    _write_tts(result.tts_dir, result.voices_dir, tiny_tts_config(text_card), mimi_cfg)
    for d in (result.stt_dir, result.stt_noheads_dir, result.tts_dir):
        shutil.copy(tokenizer, d / "tokenizer.model")
    tokenizer.unlink()
    if result.hf_home is not None:
        for repo, d in (
            (STT_REPO, result.stt_dir),
            (STT_NOHEADS_REPO, result.stt_noheads_dir),
            (TTS_REPO, result.tts_dir),
            (TTS_VOICES_REPO, result.voices_dir),
        ):
            _add_to_hf_cache(result.hf_home, repo, d)
    return result


@dataclass(frozen=True)
class RandomCheckpoints:
    """Where `build_random_checkpoints` wrote its STT, its TTS and the TTS's voices."""

    root: Path

    @property
    def stt_dir(self) -> Path:
        return self.root / "stt"

    @property
    def tts_dir(self) -> Path:
        return self.root / "tts"

    @property
    def voices_dir(self) -> Path:
        """Voice embeddings laid out like kyutai/tts-voices, named as in `VOICE_NAMES`."""
        return self.root / "tts-voices"


def random_word_tokenizer(path: Path, vocab: int) -> None:
    """A tokenizer of exactly `vocab` pieces, so that every id a random LM emits decodes;
    trained on random words plus the tiny corpus, so that every character replies use is known."""
    rng = random.Random(vocab)
    # Enough distinct words to fill the vocabulary, and no more: training time grows with the text.
    words = sorted(
        {"".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(5 * vocab)}
    )
    lines = [" ".join(rng.sample(words, 12)) for _ in range(5 * vocab // 2)]
    train_tokenizer(path, _CORPUS * 4 + lines, vocab, exact=True)


def build_random_checkpoints(
    out: Path,
    stt_config: dict,
    tts_config: dict,
    *,
    mimi_config: dict | None = None,
    voice_frames: int = 125,
    audio_driven_stt: bool = False,
    device: str = "cpu",
    seed: int = 0,
) -> RandomCheckpoints:
    """Write a random-weight STT and TTS at any architecture (a config.json's content, e.g. from
    bench/architectures.json), with the same files and the same recipe as the tiny checkpoints.

    `mimi_config` defaults to moshi's own (the Mimi every Kyutai checkpoint uses); voices are
    `voice_frames` latent frames long (125: 10 s, as Kyutai's are). `device` is where the
    models are initialised and the STT's tokens relabelled: a GPU makes a full size quick.
    A full-size random STT needs `audio_driven_stt` (see `_write_stt`) for its words to fall
    in speech and not in silence; without it, its words and pauses are built in as the tiny
    one's are (which takes a Mimi whose codebook has room for 2 x its dimension + 1 entries).
    """
    from moshi.models import loaders

    vocab = {stt_config["text_card"], tts_config["text_card"]}
    if len(vocab) != 1:
        raise ValueError(f"the STT and TTS share one tokenizer, so one text_card; got {sorted(vocab)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = RandomCheckpoints(out)
    _seed(seed)
    tokenizer = out / "tokenizer.model"
    random_word_tokenizer(tokenizer, vocab.pop())
    mimi_cfg = deepcopy(mimi_config or loaders._mimi_config)
    stt = deepcopy(stt_config) | _file_names()
    _write_stt(result.stt_dir, stt, mimi_cfg, tokenizer, device, audio_driven=audio_driven_stt)
    tts = deepcopy(tts_config) | _file_names()
    _write_tts(result.tts_dir, result.voices_dir, tts, mimi_cfg, voice_frames=voice_frames, device=device)
    for d in (result.stt_dir, result.tts_dir):
        shutil.copy(tokenizer, d / "tokenizer.model")
    tokenizer.unlink()
    return result


def main() -> None:
    """CLI: write the checkpoints (and optionally the HF cache layout)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for the local checkpoints")
    parser.add_argument("--hf-home", type=Path, help="also install them into this HF_HOME cache")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("NO_TORCH_COMPILE", "1")
    result = build_tiny_checkpoints(args.out, args.hf_home, args.seed)
    print(
        f"tiny checkpoints in {result.root}" + (f"; HF cache at {result.hf_home}" if result.hf_home else "")
    )


if __name__ == "__main__":
    main()
