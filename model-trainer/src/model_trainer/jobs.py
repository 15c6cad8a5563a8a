"""Training jobs: one OS process per job, progress streamed back and persisted, cancel, restart.

The API process never trains: ``JobRunner`` claims the oldest queued job, starts
``job_process`` (which starts the A3C workers), writes each progress message to
``training_progress`` and the job row, and on success registers the models and applies the
promotion rule. A service restart finds jobs still marked running: they are marked
interrupted and, if allowed, queued again (from the start), else failed — visibly.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import queue
import traceback
import uuid
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import Clock
from common.contracts import Envelope, ModelPromotedV1
from common.db import create_engine, create_sessionmaker, write_transaction
from common.metrics import TRAINING_STEPS
from common.runtime import Runtime
from model_trainer import repository as repo
from model_trainer.config import TrainingConfig
from model_trainer.registry import apply_promotion_rule, register_models
from model_trainer.settings import ModelTrainerSettings

log = structlog.get_logger(__name__)


def job_process(config_json: str, artifact_root: str, database_url: str, messages: Any, cancel: Any) -> None:
    """Entry point of a job's process: load data, train, report through ``messages``."""
    import torch

    from model_trainer.data import load_csv_dir, load_db_bars
    from model_trainer.training import Cancelled, run_training

    torch.set_num_threads(1)
    try:
        config = TrainingConfig.model_validate_json(config_json)
        src, split = config.source, config.split
        if src.kind == "csv":
            assert src.path is not None
            series = load_csv_dir(Path(src.path), src.symbols, split.train_start, split.test_end)
        else:

            async def load() -> Any:
                engine = create_engine(database_url)
                try:
                    async with create_sessionmaker(engine)() as session:
                        return await load_db_bars(
                            session, src.symbols or [], src.timeframe, split.train_start, split.test_end
                        )
                finally:
                    await engine.dispose()

            series = asyncio.run(load())
        if not series:
            raise ValueError("no bars for the requested symbols and dates")
        outcome = run_training(
            config,
            series,
            Path(artifact_root),
            on_progress=lambda p: messages.put(("progress", p)),
            should_stop=cancel.is_set,
        )
        models = [{"model_id": str(m.model_id), "path": str(m.path), "manifest": m.manifest} for m in outcome.models]
        messages.put(("done", {"models": models, "report": outcome.report}))
    except Cancelled:
        messages.put(("cancelled", None))
    except Exception as exc:  # the job's failure is reported, not lost with the process
        messages.put(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=5)))


class JobRunner:
    """Runs queued jobs one at a time off the event loop; tracks the running one for cancel."""

    def __init__(self, runtime: Runtime, settings: ModelTrainerSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.sessionmaker: async_sessionmaker[AsyncSession] = runtime.sessionmaker
        self.clock: Clock = runtime.clock
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._current: uuid.UUID | None = None
        self._cancel: Any = None
        self._ctx = mp.get_context(settings.job_start_method)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.recover()
        self._task = asyncio.create_task(self._loop(), name="model-trainer.jobs")

    async def close(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=self.settings.cancel_grace_seconds + 5)

    async def recover(self) -> None:
        """Jobs a previous process left running are interrupted: queue them again or fail them."""
        now = self.clock.now()
        async with write_transaction(self.sessionmaker) as session:
            for job in await repo.active_jobs(session):
                if job.status != "running":
                    continue
                resume = self.settings.resume_interrupted and job.attempts < self.settings.max_attempts
                await repo.update_job(
                    session,
                    job.id,
                    status="queued" if resume else "failed",
                    interrupted_at=now,
                    updated_at=now,
                    error=None if resume else "interrupted by a service restart; not resumed",
                    finished_at=None if resume else now,
                    progress={**job.progress, "interrupted": True},
                )
                log.warning("model_trainer.job_interrupted", job_id=str(job.id), resumed=resume)

    def kick(self) -> None:
        self._kick.set()

    async def request_cancel(self, job_id: uuid.UUID) -> None:
        if self._current == job_id and self._cancel is not None:
            self._cancel.set()

    # -- the loop ------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=2.0)
            self._kick.clear()
            while (job := await self._claim()) is not None:
                try:
                    await self._run(*job)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception("model_trainer.job_crashed", job_id=str(job[0]))
                    await self._finish(job[0], "failed", error=f"{type(exc).__name__}: {exc}")

    async def _claim(self) -> tuple[uuid.UUID, str] | None:
        now = self.clock.now()
        async with write_transaction(self.sessionmaker) as session:
            job = await repo.next_queued_job(session)
            if job is None:
                return None
            await repo.update_job(
                session, job.id, status="running", started_at=now, updated_at=now, attempts=job.attempts + 1
            )
            return job.id, TrainingConfig.model_validate(job.config).model_dump_json()

    async def _run(self, job_id: uuid.UUID, config_json: str) -> None:
        messages = self._ctx.Queue()
        self._cancel = cancel = self._ctx.Event()
        self._current = job_id
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=job_process,
            args=(
                config_json,
                str(self.settings.artifact_root.resolve()),
                self.runtime.settings.database_url.get_secret_value(),
                messages,
                cancel,
            ),
            name=f"model-trainer-job-{job_id}",
        )
        process.start()
        log.info("model_trainer.job_started", job_id=str(job_id), pid=process.pid)
        async with self.sessionmaker.begin() as session:
            seq = await repo.next_progress_seq(session, job_id)
        outcome: tuple[Any, ...] | None = None
        cancel_seen_at: float | None = None
        loop = asyncio.get_running_loop()
        try:
            while outcome is None:
                try:
                    message = await asyncio.to_thread(messages.get, True, 0.5)
                except queue.Empty:
                    if not process.is_alive():
                        # drain what the process may have sent just before exiting
                        try:
                            message = messages.get(timeout=1.0)
                        except queue.Empty:
                            outcome = ("error", f"job process exited with code {process.exitcode}", "")
                            break
                    else:
                        if cancel.is_set() or await self._cancel_requested(job_id):
                            cancel.set()
                            cancel_seen_at = cancel_seen_at or loop.time()
                            if loop.time() - cancel_seen_at > self.settings.cancel_grace_seconds:
                                process.terminate()
                                outcome = ("cancelled", None)
                        continue
                if message[0] == "progress":
                    await self._record_progress(job_id, seq, message[1])
                    seq += 1
                else:
                    outcome = message
        finally:
            self._current = None
            self._cancel = None
            await asyncio.to_thread(process.join, 30)
            if process.is_alive():
                process.kill()
        kind = outcome[0]
        if kind == "done":
            await self._complete(job_id, outcome[1])
        elif kind == "cancelled":
            await self._finish(job_id, "cancelled")
        else:
            log.error("model_trainer.job_failed", job_id=str(job_id), error=outcome[1], trace=outcome[2])
            await self._finish(job_id, "failed", error=str(outcome[1]))

    async def _cancel_requested(self, job_id: uuid.UUID) -> bool:
        async with self.sessionmaker() as session:
            job = await repo.get_job(session, job_id)
            return bool(job and job.cancel_requested)

    async def _record_progress(self, job_id: uuid.UUID, seq: int, p: dict[str, Any]) -> None:
        now = self.clock.now()
        snapshot = {
            k: p.get(k) for k in ("steps", "steps_total", "episodes", "elapsed", "eta", "fold", "seed", "seed_index")
        }
        async with write_transaction(self.sessionmaker) as session:
            job = await repo.get_job(session, job_id)
            previous = job.progress if job else {}
            snapshot["episodes_total"] = previous.get("episodes_total", 0)
            if p.get("kind") == 0.0:
                snapshot["last_reward"] = p.get("reward")
                TRAINING_STEPS.inc(_new_steps(previous, p))
            else:
                snapshot["last_val_sharpe"] = p.get("val_sharpe")
            snapshot = {**previous, **{k: v for k, v in snapshot.items() if v is not None}}
            await repo.update_job(session, job_id, progress=snapshot, updated_at=now)
            await repo.add_progress(
                session,
                job_id,
                seq,
                {
                    "recorded_at": now,
                    "fold": int(p.get("fold", 0)),
                    "seed": int(p.get("seed", 0)),
                    "steps": int(p.get("steps", 0)),
                    "episodes": int(p.get("episodes", 0)),
                    "elapsed": float(p.get("elapsed", 0.0)),
                    "reward": p.get("reward"),
                    "policy_loss": p.get("policy_loss"),
                    "value_loss": p.get("value_loss"),
                    "entropy": p.get("entropy"),
                    "val_sharpe": p.get("val_sharpe"),
                },
            )

    async def _finish(self, job_id: uuid.UUID, status: str, error: str | None = None) -> None:
        now = self.clock.now()
        async with self.sessionmaker.begin() as session:
            await repo.update_job(session, job_id, status=status, error=error, finished_at=now, updated_at=now)
        log.info("model_trainer.job_finished", job_id=str(job_id), status=status)

    async def _complete(self, job_id: uuid.UUID, result: dict[str, Any]) -> None:
        now = self.clock.now()
        promoted: repo.ModelRecord | None = None
        async with write_transaction(self.sessionmaker) as session:
            job = await repo.get_job(session, job_id)
            assert job is not None
            config = TrainingConfig.model_validate(job.config)
            records = await register_models(session, job_id, result["models"])
            if config.auto_promote:
                promoted = await apply_promotion_rule(session, records, now)
            await repo.update_job(
                session,
                job_id,
                status="succeeded",
                report=result["report"],
                model_ids=[str(r.id) for r in records],
                finished_at=now,
                updated_at=now,
            )
        if promoted is not None:
            await publish_promotion(self.runtime, promoted)
        log.info("model_trainer.job_finished", job_id=str(job_id), status="succeeded", models=len(result["models"]))


def _new_steps(previous: dict[str, Any], progress: dict[str, Any]) -> int:
    """Steps done since the last report; a report of another seed or fold starts from zero."""
    steps = int(progress.get("steps") or 0)
    same_run = all(previous.get(k) == progress.get(k) for k in ("fold", "seed"))
    before = int(previous.get("steps") or 0) if same_run else 0
    return steps - before if steps >= before else steps


async def publish_promotion(runtime: Runtime, model: repo.ModelRecord) -> None:
    """``model.promoted.v1`` after the promotion is committed (the inferencer hot-loads on it)."""
    assert model.promoted_at is not None
    payload = ModelPromotedV1(
        model_id=model.id, version=model.version, artifact_uri=model.artifact_uri, promoted_at=model.promoted_at
    )
    await runtime.bus.publish("model.promoted", Envelope(producer="model-trainer", payload=payload))
    log.info("model_trainer.model_promoted", model_id=str(model.id), version=model.version)
