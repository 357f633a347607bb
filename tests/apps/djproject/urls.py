"""The admin, a health check, and a slow view for shutdown drills."""

from __future__ import annotations

import time

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import path


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def sleep(request: HttpRequest) -> HttpResponse:
    seconds = float(request.GET.get("seconds", "1"))
    time.sleep(seconds)
    return HttpResponse(f"slept {seconds}")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", health),
    path("sleep", sleep),
]
