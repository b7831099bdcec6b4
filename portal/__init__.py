"""The project: settings, the pages and API that show both apps, health, and the Celery apps
(portal.celery for the central workers, loaded by PortalConfig.ready; portal.probe_site for a
probe site's workers, which load no Django app)."""
