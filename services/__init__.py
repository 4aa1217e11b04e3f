"""Model services of Unmute on SLURM: speech-to-text (`services.stt`), text-to-speech
(`services.tts`) and the plumbing they share (`services.common`)."""
