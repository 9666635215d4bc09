"""CloudSettings: what a cloud process reads from its environment (``GIFTWHEEL_*``), composed of
each side's settings where a process starts (``giftwheel api``, ``giftwheel worker``).

The API and the workers read one environment (deploy/compose.yaml, /etc/giftwheel/cloud.env), so
each process knows every name of both sides: a misspelt one is refused wherever it is read, and a
name of the other side is not. The code of each side takes its own part only: ApiSettings
(cloud/api/settings.py), WorkerProcessSettings (cloud/worker/settings.py); what both read is in
cloud/settings_shared.py.
"""

from __future__ import annotations

from cloud.api.settings import ApiSettings, IngestSettings
from cloud.worker.settings import WorkerProcessSettings, WorkerSettings


class CloudSettings(ApiSettings, WorkerProcessSettings):
    # Each side's own section, where the other side knows only the shared part.
    ingest: IngestSettings = IngestSettings()
    worker: WorkerSettings = WorkerSettings()
