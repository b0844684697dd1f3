"""Lightning helpers that know nothing of NeRF: the checkpoint callback train.py runs, and the share
of a ``--max_time`` budget that Lightning's Timer has used."""
from pytorch_lightning.callbacks import ModelCheckpoint, Timer


class BestAndLastCheckpoint(ModelCheckpoint):
    """The best checkpoint by the monitored metric, plus ``last.ckpt`` rewritten at every validation.

    (Lightning 2.6 rewrites ``last.ckpt`` only when the best one improved, so a resume could
    silently go back in time.) Writes are atomic: an interrupted run never leaves a torn file.
    """

    def on_validation_end(self, trainer, pl_module):
        super().on_validation_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer):  # not saved at this step yet
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def time_budget_used(trainer):
    """Share of the ``max_time`` budget used so far, 0 without one (Lightning adds its Timer only for
    a ``max_time``). The Timer keeps the elapsed time in the checkpoint, so a resumed run goes on
    from there."""
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is None:
        return 0.0
    elapsed = timer.time_elapsed("train")
    return elapsed / (elapsed + timer.time_remaining("train"))
