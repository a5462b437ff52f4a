"""pairkit.judges: the Comparator protocol, its implementations, the judgment cache and cost accounting."""

from pairkit.judges.base import *  # noqa: F403
from pairkit.judges.cache import *  # noqa: F403
from pairkit.judges.config import *  # noqa: F403
from pairkit.judges.embedding import *  # noqa: F403
from pairkit.judges.escalate import *  # noqa: F403
from pairkit.judges.http import *  # noqa: F403
from pairkit.judges.human import *  # noqa: F403
from pairkit.judges.local import *  # noqa: F403
from pairkit.judges.prompts import *  # noqa: F403
from pairkit.judges.simulated import *  # noqa: F403
