"""URLs of the peer project: the ticket links in django-helpdesk's e-mails are reversed here."""

from django.urls import include, path

urlpatterns = [
    path("helpdesk/", include("helpdesk.urls")),
]
