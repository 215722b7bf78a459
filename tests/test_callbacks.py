"""Training callbacks (``mmgan_register_callbacks``) hear every logged step and evaluation, and their state is
saved in checkpoints and restored on resume, so a callback with a window or a counter resumes exactly."""

from __future__ import annotations

import pytest

import mmgan
from mmgan.api import TrainingCallback
from mmgan.errors import PluginError
from mmgan.testing import plugin_registered, tiny_run


class LossWindow(TrainingCallback):
    """Keeps the last three D losses and counts evaluations: state a resumed run must get back."""

    name = "loss-window"

    def __init__(self) -> None:
        self.window: list[float] = []
        self.steps: list[int] = []
        self.evaluations = 0

    def on_step_end(self, step, losses):
        self.steps.append(step)
        self.window = [*self.window, losses["image/d/adv"]][-3:]

    def on_evaluation(self, step, metrics):
        assert any(key.startswith("image/eval/") for key in metrics)
        self.evaluations += 1

    def state_dict(self):
        return {"window": self.window, "evaluations": self.evaluations}

    def load_state_dict(self, state):
        self.window, self.evaluations = list(state["window"]), state["evaluations"]


class Registers:
    def __init__(self, *callbacks):
        self.callbacks = callbacks

    @mmgan.hookimpl
    def mmgan_register_callbacks(self, register):
        for callback in self.callbacks:
            register(callback)


SETTINGS = ["train.eval_every=2", "train.eval_samples=130", "image.eval_samples=130"]


@pytest.mark.slow
def test_a_callback_hears_each_step_and_evaluation_and_resumes_with_its_state(tmp_path):
    unbroken = LossWindow()
    with plugin_registered(Registers(unbroken), name="window"):
        tiny_run(tmp_path / "a", plugins=["image"], steps=4, overrides=SETTINGS)
    assert unbroken.steps == [1, 2, 3, 4] and len(unbroken.window) == 3 and unbroken.evaluations == 2

    first, second = LossWindow(), LossWindow()
    with plugin_registered(Registers(first), name="window"):
        tiny_run(tmp_path / "b", plugins=["image"], steps=2, overrides=SETTINGS)
    with plugin_registered(Registers(second), name="window"):
        from mmgan import config as cfg
        from mmgan.contract.manager import get_modality
        from mmgan.engine import Trainer

        config = cfg.resolve(get_modality, resume_dir=tmp_path / "b", steps=4)
        Trainer(config, resume=True, progress=False).fit()
    assert second.steps == [3, 4]  # it heard only the steps trained after the resume ...
    assert second.window == pytest.approx(unbroken.window)  # ... and carries the window from before it
    assert second.evaluations == unbroken.evaluations


def test_two_callbacks_of_one_name_are_one_line(tmp_path):
    with plugin_registered(Registers(LossWindow(), LossWindow()), name="window"), \
            pytest.raises(PluginError, match="'loss-window'"):
        tiny_run(tmp_path / "run", plugins=["image"], steps=1)
