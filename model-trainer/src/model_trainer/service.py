"""Business logic of the model-trainer API: jobs, models, promotion. No HTTP, no SQL strings."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from sqlalchemy.ext.asyncio import AsyncSession

from common.clock import Clock
from common.errors import Conflict, InvalidInput, NotFound
from model_trainer import repository as repo
from model_trainer.config import TrainingConfig
from model_trainer.schemas import Curves, JobStatus, ModelOut, RegimeRow
from model_trainer.settings import ModelTrainerSettings

TERMINAL = ("succeeded", "failed", "cancelled")


class TrainerService:
    def __init__(self, settings: ModelTrainerSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock

    def check_source(self, config: TrainingConfig) -> None:
        """A csv folder must exist under an allowed data dir (the API reads no arbitrary paths)."""
        if config.source.kind != "csv":
            if not config.source.symbols:
                raise InvalidInput("a db source needs symbols")
            return
        assert config.source.path is not None
        folder = Path(config.source.path).resolve()
        allowed = [d.resolve() for d in self.settings.data_dirs]
        if not allowed:
            raise InvalidInput("csv sources are disabled: set MODEL_TRAINER_DATA_DIRS")
        if not any(folder == d or folder.is_relative_to(d) for d in allowed):
            raise InvalidInput(f"{folder} is not under an allowed data dir", detail=[str(d) for d in allowed])
        if not folder.is_dir():
            raise InvalidInput(f"data folder {folder} does not exist")

    async def submit(self, session: AsyncSession, config: TrainingConfig, trigger: str = "api") -> uuid.UUID:
        self.check_source(config)
        job_id = uuid.uuid4()
        await repo.create_job(session, job_id, config.model_dump(mode="json"), trigger, self.clock.now())
        return job_id

    async def _job(self, session: AsyncSession, job_id: uuid.UUID) -> repo.TrainingJobRecord:
        job = await repo.get_job(session, job_id)
        if job is None:
            raise NotFound(f"no training job {job_id}")
        return job

    async def status(self, session: AsyncSession, job_id: uuid.UUID) -> JobStatus:
        job = await self._job(session, job_id)
        curves = Curves()
        for p in await repo.progress_points(session, job_id):
            if p.val_sharpe is not None:
                curves.val_steps.append(p.steps)
                curves.val_seed.append(p.seed)
                curves.val_sharpe.append(p.val_sharpe)
            else:
                curves.steps.append(p.steps)
                curves.seed.append(p.seed)
                curves.reward.append(p.reward)
                curves.policy_loss.append(p.policy_loss)
                curves.value_loss.append(p.value_loss)
                curves.entropy.append(p.entropy)
        return JobStatus(
            job_id=job.id,
            status=job.status,
            trigger=job.trigger,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            interrupted_at=job.interrupted_at,
            attempts=job.attempts,
            cancel_requested=job.cancel_requested,
            error=job.error,
            progress=job.progress,
            curves=curves,
            model_ids=job.model_ids,
            summary=(job.report or {}).get("summary"),
            config=job.config,
        )

    async def cancel(self, session: AsyncSession, job_id: uuid.UUID) -> str:
        job = await self._job(session, job_id)
        if job.status in TERMINAL:
            raise Conflict(f"job {job_id} is already {job.status}")
        now = self.clock.now()
        if job.status == "queued":
            await repo.update_job(
                session, job_id, status="cancelled", cancel_requested=True, finished_at=now, updated_at=now
            )
            return "cancelled"
        await repo.update_job(session, job_id, cancel_requested=True, updated_at=now)
        return job.status

    async def models(self, session: AsyncSession, status: str | None) -> list[ModelOut]:
        if status is not None and status not in repo.MODEL_STATES:
            raise InvalidInput(f"status must be one of {', '.join(repo.MODEL_STATES)}")
        return [model_out(m) for m in await repo.list_models(session, status)]

    async def model(self, session: AsyncSession, model_id: uuid.UUID) -> repo.ModelRecord:
        record = await repo.get_model(session, model_id)
        if record is None:
            raise NotFound(f"no model {model_id}")
        return record

    async def promote(self, session: AsyncSession, model_id: uuid.UUID) -> tuple[repo.ModelRecord, uuid.UUID | None]:
        record = await self.model(session, model_id)
        if record.status == "promoted":
            raise Conflict(f"model {model_id} is already promoted")
        if not (artifact_dir(record) / "policy.pt").is_file():
            raise Conflict(f"model {model_id} has no artifact at {record.artifact_uri}")
        incumbent = await repo.promoted_model(session)
        await repo.promote(session, record, self.clock.now())
        return record, incumbent.id if incumbent else None

    async def regimes(
        self, session: AsyncSession, model_id: uuid.UUID, symbol: str | None, limit: int
    ) -> list[RegimeRow]:
        record = await self.model(session, model_id)
        path = artifact_dir(record) / "regimes.csv"
        if not path.is_file():
            raise NotFound(f"model {model_id} has no stored regimes")
        rows: list[RegimeRow] = []
        with path.open(newline="") as handle:
            for r in csv.DictReader(handle):
                if symbol and r["symbol"] != symbol:
                    continue
                probs = [float(v) for k, v in r.items() if k.startswith("p")]
                rows.append(RegimeRow(symbol=r["symbol"], date=r["date"], regime=int(r["regime"]), probabilities=probs))
        return rows[-limit:]


def artifact_dir(record: repo.ModelRecord) -> Path:
    return Path(url2pathname(urlparse(record.artifact_uri).path))


def model_out(m: repo.ModelRecord) -> ModelOut:
    return ModelOut(
        id=m.id,
        version=m.version,
        job_id=m.job_id,
        status=m.status,
        created_at=m.created_at,
        promoted_at=m.promoted_at,
        data_hash=m.data_hash,
        symbols=m.symbols,
        ranges=m.ranges,
        feature_set=m.feature_set,
        feature_names=m.feature_names,
        timeframe=m.timeframe,
        seed=m.seed,
        code_version=m.code_version,
        artifact_uri=m.artifact_uri,
        metrics=m.metrics,
        config=m.config,
    )
