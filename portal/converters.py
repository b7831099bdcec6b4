"""Path converters of the portal's URLs, registered when this is imported (portal.urls and
portal.api.urls both import it, before their patterns)."""

from django.urls import register_converter


class TokenKeyConverter:
    """A token's token_key: the hex characters its key begins with. Anything else in the path is
    not a token of anyone's (404), rather than a string the database would refuse (a NUL)."""

    regex = "[0-9a-f]{1,64}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(TokenKeyConverter, "token_key")
