"""Unit tests of the orchestrator's pipeline pieces (no services needed)."""

from __future__ import annotations

from orchestrator.pipeline.config import TurnDetectionConfig
from orchestrator.pipeline.history import History
from orchestrator.pipeline.latency import TurnLatency
from orchestrator.pipeline.speech_text import SpeechWords, clean_for_speech
from orchestrator.pipeline.turns import TurnDetector, TurnEvent


def test_cleaning_drops_markup_emoji_and_stage_directions():
    text = "**Sure!** Here's a *smiles* list:\n- one 😀\n- two (laughs) [pause]\n## Done `x`"
    assert clean_for_speech(text).split() == ["Sure!", "Here's", "a", "list:", "one", "two", "Done", "x"]


def test_words_are_released_only_when_complete():
    words = SpeechWords()
    out = []
    for delta in ["Hel", "lo wor", "ld, *chu", "ckles* how", " are", " you?"]:
        out += words.feed(delta)
    assert out == ["Hello", "world,", "how", "are"]
    assert words.flush() == ["you?"]


VOICED, QUIET = [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.7, 0.5]


def test_server_vad_needs_speech_then_pause_and_silence_and_says_when_an_end_is_likely():
    turns = TurnDetector(TurnDetectionConfig(kind="server_vad", threshold=0.6, silence_duration_ms=400))
    assert turns.on_step(VOICED) is None  # one voiced frame is not speech yet
    assert turns.on_step(VOICED) is TurnEvent.SPEECH_STARTED
    events = [turns.on_step(QUIET) for _ in range(5)]
    assert events == [
        TurnEvent.PAUSE_STARTED,  # 80 ms: the end-of-turn model may judge the pause
        None,
        TurnEvent.LIKELY_END,  # 240 ms, past half the silence: a reply may be prepared
        None,
        TurnEvent.END_OF_TURN,  # 5 x 80 ms >= 400 ms
    ]
    assert turns.on_word() is TurnEvent.SPEECH_STARTED  # a word is speech too


def test_semantic_vad_ends_on_the_models_verdict_or_at_the_longest_wait():
    config = TurnDetectionConfig(kind="semantic_vad", eagerness="high")  # bar 0.3, 80 ms, 2 s
    sure = TurnDetector(config, use_model=True)
    sure.on_step(VOICED), sure.on_step(VOICED)
    assert sure.on_step(QUIET) is TurnEvent.PAUSE_STARTED
    assert sure.on_end_probability(0.9) is TurnEvent.END_OF_TURN
    unsure = TurnDetector(config, use_model=True)
    unsure.on_step(VOICED), unsure.on_step(VOICED)
    unsure.on_step(QUIET)
    assert unsure.on_end_probability(0.1) is None  # "I'd like to book... um"
    events = [unsure.on_step(QUIET) for _ in range(24)]  # to 2 s of quiet
    assert events.count(TurnEvent.END_OF_TURN) == 1 and events[-1] is TurnEvent.END_OF_TURN
    stale = TurnDetector(config, use_model=True)
    stale.on_step(VOICED), stale.on_step(VOICED), stale.on_step(QUIET), stale.on_step(VOICED)
    assert stale.on_end_probability(0.9) is None  # the user spoke again before the verdict


def say(history: History, role: str, text: str, item_id: str) -> None:
    history.reserve(role, item_id)
    history.fill(item_id, text)


def test_history_is_bounded_by_turns_and_tokens_and_starts_with_a_user():
    history = History(max_turns=2, max_tokens=10_000)
    for i in range(4):
        say(history, "user", f"question {i}", f"user{i}")
        say(history, "assistant", f"answer {i}", f"item{i}")
    assert [m["content"] for m in history.for_llm()[1:]] == [
        "question 2",
        "answer 2",
        "question 3",
        "answer 3",
    ]
    small = History(max_turns=100, max_tokens=40)
    for i in range(10):
        say(small, "user", "a fairly long user message number " + str(i), f"u{i}")
    assert small.for_llm()[-1]["content"].endswith("9") and len(small.for_llm()) < 6
    assert history.fill("item3", "ans") and history.for_llm()[-1]["content"] == "ans"
    history.fill("item2", "")
    assert all(m["content"] for m in history.for_llm())  # fully interrupted turns are left out


def test_history_keeps_turns_in_the_order_they_began():
    """A reply reserved before the next user turn stays before it, even when it is filled last;
    an empty reply between two user turns leaves one user message, as chat templates expect."""
    history = History()
    say(history, "user", "first", "u1")
    history.reserve("assistant", "a1")
    say(history, "user", "second", "u2")
    history.fill("a1", "reply")
    assert [m["content"] for m in history.for_llm()[1:]] == ["first", "reply", "second"]
    history.fill("a1", "")  # interrupted before a word was heard
    assert history.for_llm()[1:] == [{"role": "user", "content": "first second"}]


def test_latency_stages_are_derived_from_marks():
    latency = TurnLatency(
        speech_end=10.0, transcript=10.2, llm_first_token=10.5, tts_first_audio=10.6, first_audio_sent=10.61
    )
    stages = latency.stages_ms()
    assert stages["transcript"] == 200.0 and stages["llm_first_token"] == 300.0
    assert stages["voice_to_voice"] == 610.0
    assert TurnLatency(speech_end=1.0).stages_ms()["voice_to_voice"] is None
