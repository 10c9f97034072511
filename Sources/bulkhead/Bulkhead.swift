import ArgumentParser

@main
struct Bulkhead: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bulkhead",
        abstract: "A KVM virtual machine monitor whose device backends run as restartable driver domains.",
        subcommands: [Run.self, Status.self, Inject.self, Events.self, Metrics.self, Chaos.self]
    )
}
