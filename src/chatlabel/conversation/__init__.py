"""One conversation for every platform: neutral events in, views out, words from the catalog."""

from .catalog import Catalog, Texts
from .conversation import Conversation
from .events import MessageRef, Who
from .ports import MediaFailed, Outlet, SendFailed, Unreachable
from .render import Mechanics
from .views import Button, Chart, Document, Home, Media, Message, Priority

__all__ = [
    "Button",
    "Catalog",
    "Chart",
    "Conversation",
    "Document",
    "Home",
    "Mechanics",
    "Media",
    "MediaFailed",
    "Message",
    "MessageRef",
    "Outlet",
    "Priority",
    "SendFailed",
    "Texts",
    "Unreachable",
    "Who",
]
