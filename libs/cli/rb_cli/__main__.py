from rb_cli.main import main

main()
