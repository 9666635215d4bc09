"""What the routes share, built once in the app's lifespan and reached through the request."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from starlette.requests import HTTPConnection

from cloud.api.auth import Authenticator
from cloud.api.settings import ApiSettings
from cloud.feedback.service import FeedbackService
from cloud.ingest.service import IngestService
from cloud.realtime.service import Realtime
from giftwheel.clock import Clock


@dataclass(frozen=True)
class Services:
    settings: ApiSettings
    auth: Authenticator
    ingest: IngestService
    realtime: Realtime
    feedback: FeedbackService
    clock: Clock


def services(connection: HTTPConnection | Request) -> Services:
    found: Services = connection.app.state.services
    return found
