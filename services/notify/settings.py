from pydantic import Field

from shared.settings import CommonSettings

from .channels.settings import ChannelSettings


class NotifySettings(CommonSettings, ChannelSettings):
    port: int = Field(default=8002, validation_alias="NOTIFY_PORT")
    locale: str = Field(default="zh-CN", validation_alias="NOTIFY_LOCALE")
    team_webhook: str | None = Field(default=None, validation_alias="WECHAT_WORK_WEBHOOK_URL")
    duty_desk_webhook: str | None = Field(default=None, validation_alias="DUTY_DESK_WEBHOOK_URL")
    public_base_url: str = Field(
        default="http://127.0.0.1:8000", validation_alias="PUBLIC_BASE_URL"
    )
