@_exported import TideCore
