"""Worker start-up: a GPU-queue worker builds its engine before its first task, and says so loudly when it cannot."""
from __future__ import annotations

import logging
from typing import Any

from celery import concurrency
from celery.signals import worker_init

from moderation.conf import moderation_settings
from workers.engine import engine_start

logger = logging.getLogger(__name__)
# Pools that run tasks in the worker's own process, where an engine built at start is the one used.
IN_PROCESS_POOLS = ("celery.concurrency.solo", "celery.concurrency.thread")


@worker_init.connect
def _engine_start_at_worker_init(sender: Any = None, **kwargs: Any) -> None:
    if moderation_settings.GPU_QUEUE not in _consumed_queues(sender):
        return  # a CPU worker (sweeper, webhooks) never loads the models
    pool = concurrency.get_implementation(sender.pool_cls)
    if pool.__module__ not in IN_PROCESS_POOLS:
        logger.warning("The %r queue is served by a %s pool: the engine is built in each child on its first "
                       "task. Run GPU workers with -P solo, one per GPU.", moderation_settings.GPU_QUEUE,
                       pool.__module__.rsplit(".", 1)[-1])
        return
    if engine_start() is None:
        logger.info("Engine built at start; this worker is ready to analyse.")


def _consumed_queues(worker: Any) -> set[str]:
    queues = worker.app.amqp.queues
    return set(queues.consume_from or queues)
