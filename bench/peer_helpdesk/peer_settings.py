"""Django settings of the minimal django-helpdesk project the benchmark runs as the peer.

Written for the benchmark: SQLite with Django's defaults, django-helpdesk's defaults, outgoing mail
to a local sink (an SMTP server on 127.0.0.1 run by the harness, or files in a directory), no
network. Paths and the sink come from environment variables set by ``bench.peer_helpdesk``.
"""

import os
from pathlib import Path

WORKDIR = Path(os.environ.get("PEER_WORKDIR", Path(__file__).resolve().parent))

SECRET_KEY = "omnidesk-bench-peer-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SITE_ID = 1

INSTALLED_APPS = [
    "django.contrib.admin",  # required by helpdesk (admin/maintenance)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",  # builds the ticket URLs in e-mails
    "django.contrib.humanize",  # elapsed-time formatting in templates
    "rest_framework",  # helpdesk's API (its urls import it)
    "helpdesk",
]

# pinax-teams is optional; without it teams mode must be off (docs: teams.rst)
HELPDESK_TEAMS_MODE_ENABLED = False

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "peer_urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("PEER_DB_PATH", str(WORKDIR / "db.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

STATIC_URL = "/static/"
MEDIA_URL = "/media/"
MEDIA_ROOT = os.environ.get("PEER_MEDIA_ROOT", str(WORKDIR / "media"))
LOGIN_URL = "/helpdesk/login/"

DEFAULT_FROM_EMAIL = "helpdesk@acme.test"
SERVER_EMAIL = DEFAULT_FROM_EMAIL

_sink = os.environ.get("PEER_MAIL_SINK", "file")
if _sink == "smtp":
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = "127.0.0.1"
    EMAIL_PORT = int(os.environ["PEER_SMTP_PORT"])
    EMAIL_USE_TLS = False
    EMAIL_TIMEOUT = 10
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = os.environ.get("PEER_MAIL_DIR", str(WORKDIR / "sent-mail"))
