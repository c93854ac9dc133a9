"""Routes, without trailing slashes, as in the other examples."""

from __future__ import annotations

from django.urls import path

import views

urlpatterns = [
    path("health", views.health),
    path("whoami", views.whoami),
    path("dns/zones", views.dns_zones),
    path("vps/servers", views.vps_servers),
]
