from dbward.cli.main import main

main()
