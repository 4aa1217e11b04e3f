"""Whisper's log-mel input features, in numpy, for the end-of-turn model.

Smart Turn v3 is a Whisper encoder trained on the features of Hugging Face's
``WhisperFeatureExtractor`` with an 8 s window and ``do_normalize=True``: 80 Slaney mel
bands of a 400-point STFT every 160 samples at 16 kHz, log10, floored at 8 decades
below the window's peak and scaled by ``(x + 4) / 4``. The waveform itself is first
scaled to zero mean and unit variance, something Whisper proper does not do. The model
sees the last 8 s of a turn, so shorter audio is padded with silence at the front: the
turn's end always sits at the window's end.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000
WINDOW_SECONDS = 8
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_SECONDS
N_FFT = 400
HOP_LENGTH = 160
N_MELS = 80
N_FRAMES = WINDOW_SAMPLES // HOP_LENGTH  # 800: the centred STFT's last frame is dropped

_LOG_RANGE = 8.0  # decades kept below the window's loudest mel bin
_POWER_FLOOR = 1e-10
_VARIANCE_EPS = 1e-7

# Slaney's mel scale: linear below 1 kHz (3 mel per 200 Hz), logarithmic above.
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = 15.0
_SLANEY_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    log_part = (
        _SLANEY_BREAK_MEL + np.log(np.maximum(hz, _SLANEY_BREAK_HZ) / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    )
    return np.where(hz < _SLANEY_BREAK_HZ, hz * 3.0 / 200.0, log_part)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    log_part = _SLANEY_BREAK_HZ * np.exp(
        (np.maximum(mel, _SLANEY_BREAK_MEL) - _SLANEY_BREAK_MEL) * _SLANEY_LOG_STEP
    )
    return np.where(mel < _SLANEY_BREAK_MEL, mel * 200.0 / 3.0, log_part)


def mel_filterbank() -> npt.NDArray[np.float64]:
    """The (N_MELS, N_FFT // 2 + 1) triangular filters, each scaled to unit area (Slaney's
    normalisation, as librosa and Whisper use), spanning 0 Hz to Nyquist."""
    edges_mel = np.linspace(0.0, _hz_to_mel(np.array(SAMPLE_RATE / 2.0)), N_MELS + 2)
    edges = _mel_to_hz(edges_mel)
    bins = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return triangles * (2.0 / (upper - lower))


_FILTERS = mel_filterbank()
_WINDOW = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann


def last_window(audio: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """The last WINDOW_SECONDS of 16 kHz `audio`, zero-padded at the front when shorter."""
    audio = np.asarray(audio, dtype=np.float32)[-WINDOW_SAMPLES:]
    return np.pad(audio, (WINDOW_SAMPLES - audio.size, 0))


def log_mel_features(audio: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """The model's (N_MELS, N_FRAMES) input for the last 8 s of mono 16 kHz `audio`."""
    if np.ndim(audio) != 1:
        raise ValueError(f"expected mono audio (1-D), got shape {np.shape(audio)}")
    x = last_window(audio)
    # Normalised over the whole window, silence padding included, as in training.
    x = (x - x.mean()) / np.sqrt(x.var() + _VARIANCE_EPS)
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH][:N_FRAMES]
    spectrum = np.fft.rfft(frames * _WINDOW, axis=-1)
    power = spectrum.real**2 + spectrum.imag**2
    log_mel = np.log10(np.maximum(_FILTERS @ power.T, _POWER_FLOOR))
    log_mel = np.maximum(log_mel, log_mel.max() - _LOG_RANGE)
    return ((log_mel + 4.0) / 4.0).astype(np.float32)
