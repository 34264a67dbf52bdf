import uvicorn

from .settings import NotifySettings

if __name__ == "__main__":
    settings = NotifySettings()
    uvicorn.run(
        "services.notify.app:build_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
