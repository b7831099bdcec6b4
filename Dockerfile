# The portal's image: web (gunicorn), Celery workers and beat all run from it.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORTAL_VAR_DIR=/var/lib/portal
WORKDIR /app

# DejaVu fonts for the PDF change requests (PDF_FONT_DIR).
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

COPY requirements.txt requirements-ldap.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# Sign-in against LDAP or Active Directory: python-ldap is built against OpenLDAP's headers, as
# `make test` builds it; the compiler goes once it is built.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libldap2-dev libsasl2-dev \
    && pip install --no-cache-dir -r requirements-ldap.txt \
    && apt-get purge -y gcc && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

COPY . .
RUN DJANGO_SECRET_KEY=build-only-key-for-collectstatic-never-used-to-sign-anything python manage.py collectstatic --noinput \
    && useradd --system --home /app portal && mkdir -p /var/lib/portal && chown portal /var/lib/portal
USER portal

EXPOSE 8000
CMD ["gunicorn", "portal.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
