"""The alert webhook: a JSON summary of a failed or blocked run POSTed to the URL in the account's
`alert_webhook_env` variable (Slack-style incoming webhooks, an on-call tool, any HTTP receiver)."""

from __future__ import annotations

import json
import os
from datetime import date, datetime

import dagster as dg
import requests

from lsq_pipeline.settings import AlertSettings


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, (date, datetime)) else value


class AlertWebhook(dg.ConfigurableResource, AlertSettings):
    """Where alerts go: the URL in the variable `alert_webhook_env` names, read when an alert is sent
    (a variable set only where the sensors run counts); none set, none sent."""

    timeout_seconds: float = 10.0

    def receiver_url(self) -> str:
        return os.environ.get(self.alert_webhook_env, "") if self.alert_webhook_env else ""

    def post(self, summary: dict[str, object]) -> bool:
        """POST the summary as JSON; True when sent and answered 2xx. A receiver that is down
        must not hide the run's own failure, so errors are returned, not raised."""
        url = self.receiver_url()
        if not url:
            return False
        body = {key: _plain(value) for key, value in summary.items()}
        if isinstance(body.get("api_calls"), str):
            body["api_calls"] = json.loads(body["api_calls"])
        body["text"] = (
            f"lsq_pipeline run {body['run_id']} {body['status']} for {body['first_day']}..{body['last_day']}"
            + (f": {body['reason']}" if body.get("reason") else "")
        )
        try:
            answer = requests.post(url, json=body, timeout=self.timeout_seconds)
        except requests.RequestException:
            return False
        return answer.ok
