"""API tokens (ports.models.ApiToken): yours, at /api/tokens/, and your team's members', for the
team's admins, at /api/teams/{id}/tokens/. A token's key is answered once, when it is made; a
token is named by its `token_key` (the key's first characters), never by its hash."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils.functional import cached_property
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, mixins, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from portal.converters import TokenKeyConverter
from ports.choices import Outcome, TeamRole
from ports.models import ApiToken, Team
from ports.scoping import require_role

from .outcomes import answer, outcome_header, written
from .serializers import ApiTokenSerializer, NewApiTokenSerializer

WrittenNewApiTokenSerializer = written(NewApiTokenSerializer)

# Why a token may not make tokens: a key that leaks would make keys of its own, which outlive
# its expiry and its revocation. A person signed in makes them (the page, or the API in the browser).
TOKEN_MAKES_NO_TOKEN = (
    "A token cannot make tokens: sign in and make one on the API tokens page (/tokens/), "
    "or with `manage.py create_token`."
)
NEEDS_ADMIN = OpenApiResponse(description="You are not the team's admin: the answer says which role you have.")


@extend_schema_view(
    create=extend_schema(
        responses={201: WrittenNewApiTokenSerializer, 403: OpenApiResponse(description=TOKEN_MAKES_NO_TOKEN)},
        parameters=[outcome_header([201])],
        description=(
            "Make a token: the answer holds its key, this once (it is kept only as a hash). It lives `days` "
            "(API_TOKEN_DAYS unless given; more than API_TOKEN_MAX_DAYS is a 400). Needs a browser session."
        ),
    ),
    destroy=extend_schema(description="Revoke your token: it stops working at once."),
)
class TokenViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Your API tokens, newest first: expired ones too (`expired`), until you revoke them."""

    serializer_class = ApiTokenSerializer
    lookup_field = "token_key"
    lookup_value_regex = TokenKeyConverter.regex

    def get_queryset(self) -> QuerySet[ApiToken]:
        if getattr(self, "swagger_fake_view", False):
            return ApiToken.objects.none()
        return ApiToken.objects.filter(user=self.request.user).select_related("user")

    def destroy(self, request: Request, *args: object, token_key: str, **kwargs: object) -> Response:
        return revoked(self.get_queryset(), token_key)

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        if request.auth is not None:
            raise PermissionDenied(TOKEN_MAKES_NO_TOKEN)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, key = ApiToken.issue(request.user, **serializer.validated_data)
        token.key = key  # for the answer: the one time it is shown
        context = {**self.get_serializer_context(), "outcome": Outcome.CREATED}
        return answer(WrittenNewApiTokenSerializer(token, context=context).data, Outcome.CREATED)


class TeamTokens(generics.GenericAPIView):
    """The tokens of the members of team {id}, for the team's admins (403 for its other members,
    404 for others). A member's token reaches all of their teams: revoking it ends it everywhere."""

    serializer_class = ApiTokenSerializer
    lookup_field = "token_key"

    @cached_property
    def team(self) -> Team:
        found = get_object_or_404(Team.objects.for_user(self.request.user), pk=self.kwargs["pk"])
        require_role(self.request.user, found, TeamRole.ADMIN)
        return found

    def get_queryset(self) -> QuerySet[ApiToken]:
        if getattr(self, "swagger_fake_view", False):
            return ApiToken.objects.none()
        return ApiToken.objects.of_team(self.team, self.request.user)


@extend_schema_view(get=extend_schema(responses={200: ApiTokenSerializer(many=True), 403: NEEDS_ADMIN}))
class TeamTokensView(TeamTokens, generics.ListAPIView):
    """The tokens of the team's members, by user, newest first."""


@extend_schema_view(delete=extend_schema(responses={204: None, 403: NEEDS_ADMIN}))
class TeamTokenView(TeamTokens, generics.DestroyAPIView):
    """Revoke a member's token: it stops working at once."""

    def delete(self, request: Request, *args: object, token_key: str, **kwargs: object) -> Response:
        return revoked(self.get_queryset(), token_key)


def revoked(tokens: QuerySet[ApiToken], token_key: str) -> Response:
    """204 once the token of `tokens` named `token_key` is revoked; 404 if there is none."""
    if not tokens.revoke(token_key):
        raise Http404
    return Response(status=204)
