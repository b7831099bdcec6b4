"""API tokens (django-rest-knox): named, hashed, expiring."""

REST_KNOX: dict = {}
