"""What the bot's settings methods leave behind in the Telegram double: commands, menu
buttons, the webhook, the bot's name and descriptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiogram.types import BotCommand, MenuButtonDefault, WebhookInfo


@dataclass(slots=True)
class BotSettings:
    """What setMyCommands, setChatMenuButton, setWebhook and setMy* leave behind."""

    commands: dict[tuple[Any, ...], list[BotCommand]] = field(default_factory=dict)
    menu_buttons: dict[int | None, Any] = field(default_factory=dict)
    webhook_url: str = ""
    webhook_secret: str | None = None
    allowed_updates: list[str] | None = None
    """None: Telegram's default set of update types (not reported by getWebhookInfo)."""
    max_connections: int = 40  # Telegram's default
    profile: dict[tuple[str, str], str] = field(default_factory=dict)

    def answer(self, method: str, params: dict[str, Any]) -> Any:
        match method:
            case "setMyCommands":
                self.commands[_scope_key(params)] = list(params["commands"])
            case "deleteMyCommands":
                self.commands.pop(_scope_key(params), None)
            case "getMyCommands":
                return list(self.commands.get(_scope_key(params), ()))
            case "setChatMenuButton":
                self.menu_buttons[params.get("chat_id")] = params.get("menu_button")
            case "getChatMenuButton":
                button = self.menu_buttons.get(params.get("chat_id"))
                return button or self.menu_buttons.get(None) or MenuButtonDefault()
            case "setWebhook":
                self.webhook_url = params["url"]
                self.webhook_secret = params.get("secret_token")
                # Telegram keeps the previous types when none are given; [] means its
                # default set, which getWebhookInfo then leaves out.
                if "allowed_updates" in params:
                    self.allowed_updates = list(params["allowed_updates"]) or None
                self.max_connections = params.get("max_connections", 40)
            case "deleteWebhook":
                # The update types stay: getUpdates and the next setWebhook share them.
                self.webhook_url, self.webhook_secret = "", None
            case "getWebhookInfo":
                return WebhookInfo(
                    url=self.webhook_url,
                    has_custom_certificate=False,
                    pending_update_count=0,
                    allowed_updates=self.allowed_updates,
                    max_connections=self.max_connections if self.webhook_url else None,
                )
            case "setMyName" | "setMyDescription" | "setMyShortDescription":
                field_name = _PROFILE_FIELDS[method]
                language = params.get("language_code", "")
                self.profile[(field_name, language)] = params.get(field_name, "")
            case _:
                raise NotImplementedError(method)
        return True


_PROFILE_FIELDS = {
    "setMyName": "name",
    "setMyDescription": "description",
    "setMyShortDescription": "short_description",
}


def _scope_key(params: dict[str, Any]) -> tuple[Any, ...]:
    scope = params.get("scope")
    return (
        scope.type if scope is not None else "default",
        getattr(scope, "chat_id", None),
        getattr(scope, "user_id", None),
        params.get("language_code", ""),
    )
