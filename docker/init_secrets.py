"""First start of the Docker stack: generate the Fernet key and the admin password once, into
the shared volume mounted at ``/opt/airflow/auth``; later starts keep them.

The Airflow services read the key with ``AIRFLOW__CORE__FERNET_KEY_CMD`` (connections and
variables are encrypted with it) and the simple auth manager reads the password file. The
password is printed, so ``docker compose logs airflow-init`` shows it again.
Usage: python docker/init_secrets.py [folder]
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

FERNET_FILE = "fernet_key"
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    os.replace(tmp, path)


def ensure_secrets(folder: Path) -> dict[str, str]:
    """The Fernet key and admin password, created when missing; never replaced once there."""
    from cryptography.fernet import Fernet

    folder.mkdir(parents=True, exist_ok=True)
    key_path = folder / FERNET_FILE
    if not key_path.exists() or not key_path.read_text().strip():
        _write_private(key_path, Fernet.generate_key().decode())
    Fernet(key_path.read_text().strip().encode())  # a corrupt key fails here, not in the scheduler
    passwords_path = folder / PASSWORDS_FILE
    passwords = json.loads(passwords_path.read_text()) if passwords_path.exists() else {}
    if not passwords.get("admin"):
        passwords["admin"] = secrets.token_urlsafe(12)
        _write_private(passwords_path, json.dumps(passwords))
    return {"fernet_key_file": str(key_path), "admin_password": passwords["admin"]}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    found = ensure_secrets(Path(args[0] if args else "/opt/airflow/auth"))
    print(f"Fernet key: {found['fernet_key_file']}")
    print(f"Airflow UI login: admin / {found['admin_password']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
