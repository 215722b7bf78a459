"""The speech modality's shard format: 16-bit PCM WAV members, cropped to a random segment when read."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from mmgan.data.shards import PackStream, ShardCodec
from mmgan.errors import DataError
from mmgan_speech.audio import read_wav_bytes, wav_bytes
from mmgan_speech.datasets import SpeechLikeDataset, WavFolderDataset, open_speech_source


class SpeechCodec(ShardCodec):
    """Packs whole clips of a WAV folder or LJSpeech (resampled to ``sample_rate``, peak-normalised), or the
    segments of ``builtin:speech``, as 16-bit WAV members. Reading crops a random ``segment_length`` window
    from each (a fresh one each time a clip comes round) and zero-pads shorter clips, or skips them when
    ``short_clips`` is "skip", so one set of shards serves any segment length."""

    def __init__(self, segment_length: int, sample_rate: int, short_clips: str = "pad") -> None:
        self.segment_length = segment_length
        self.sample_rate = sample_rate
        self.short_clips = short_clips

    def info(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate, "encoding": "wav-pcm16"}

    def pack(self, source: str, seed: int, limit: int | None) -> PackStream:
        dataset = open_speech_source(source, self.segment_length, self.sample_rate, seed, self.short_clips)
        if isinstance(dataset, SpeechLikeDataset):
            count = len(dataset) if limit is None else min(limit, len(dataset))

            def segments() -> Iterator[dict[str, bytes]]:
                for i in range(count):
                    yield {"wav": wav_bytes(dataset[i][0].numpy(), self.sample_rate)}

            return PackStream(count, segments())
        assert isinstance(dataset, WavFolderDataset)
        count = len(dataset.files) if limit is None else min(limit, len(dataset.files))
        order = np.random.default_rng(seed).permutation(len(dataset.files))[:count]

        def clips() -> Iterator[dict[str, bytes]]:
            for c in order:
                meta = json.dumps({"name": dataset.clip_name(int(c))}).encode()
                yield {"wav": wav_bytes(dataset.clip_wave(int(c)), self.sample_rate), "json": meta}

        return PackStream(count, clips())

    def decode(self, sample: Mapping[str, bytes], rng: np.random.Generator) -> torch.Tensor:
        if "wav" not in sample:
            found = sorted(k for k in sample if not k.startswith("__"))
            raise DataError(f"no wav member; found {found}")
        wave = read_wav_bytes(sample["wav"], f"{sample.get('__key__')}.wav", self.sample_rate)
        n = self.segment_length
        out = np.zeros(n, dtype=np.float32)
        if wave.size >= n:
            start = int(rng.integers(0, wave.size - n + 1))
            out[:] = wave[start:start + n]
        elif self.short_clips == "skip":
            raise DataError(f"clip of {wave.size} samples is shorter than segment_length {n} (short_clips=skip)")
        else:
            out[:wave.size] = wave
        return torch.from_numpy(out)[None, :]

    def check(self, manifest: Mapping[str, Any], where: str) -> None:
        rate = manifest.get("sample_rate")
        if rate is not None and rate != self.sample_rate:
            raise DataError(f"{where}: the shards hold {rate} Hz audio (manifest.json) but the speech modality "
                            f"trains at {self.sample_rate} Hz; pack them again")
