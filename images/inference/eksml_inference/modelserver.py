"""KServe's ModelServer, listening on a chosen address.

KServe binds its REST server to 0.0.0.0 unconditionally; the local profile must listen on
loopback only, so the address is set on the uvicorn config after KServe builds it and
before the event loop starts. Import only after ``sys.argv`` is cleared (see server.py).
"""

from __future__ import annotations

from typing import Any

import kserve


class ModelServer(kserve.ModelServer):
    def __init__(self, host: str = "0.0.0.0", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host = host

    def setup_event_loop(self) -> None:
        if self._rest_server is not None:
            self._rest_server.config.host = self.host
        super().setup_event_loop()
